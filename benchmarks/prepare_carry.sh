#!/usr/bin/env bash
# Fills .carry/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU machine that has
# nvcc, torch, pybind11, scikit-build-core, cmake, ninja and pytest but no package registry:
#
#   .carry/prefix/include/eigen3        Eigen headers              (from /usr/include/eigen3)
#   .carry/prefix/share/eigen3/cmake    Eigen's relocatable CMake package config
#   .carry/googletest                   GoogleTest sources         (from /usr/src/googletest)
#   .carry/wheels/kanditioned-1.0.4-*   the peer package, for parity tests and benchmarks
#
# Run it here (the development machine), then pass carry=[".carry"] to the device call.
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=.carry
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

need() { [ -e "$1" ] || { echo "prepare_carry: missing $1 ($2)" >&2; exit 1; }; }
need /usr/include/eigen3/Eigen/Core "apt-get install libeigen3-dev"
need /usr/share/eigen3/cmake/Eigen3Config.cmake "apt-get install libeigen3-dev"
need /usr/src/googletest/CMakeLists.txt "apt-get install googletest"

rm -rf "$CARRY"
mkdir -p "$CARRY/prefix/include" "$CARRY/prefix/share/eigen3" "$CARRY/wheels"
cp -r /usr/include/eigen3 "$CARRY/prefix/include/eigen3"
cp -r /usr/share/eigen3/cmake "$CARRY/prefix/share/eigen3/cmake"
cp -r /usr/src/googletest "$CARRY/googletest"
"$PY" -m pip download -q kanditioned==1.0.4 --no-deps -d "$CARRY/wheels"

du -sh "$CARRY"
echo "prepare_carry: done; the device call must carry [\".carry\"] (64 MiB limit)"
