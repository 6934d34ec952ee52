#!/usr/bin/env bash
# Builds examples/cpp against an installed kancore CMake package, once per library target:
#   build/example-cpp       find_package(kancore CONFIG REQUIRED) + kancore::kancore: configured
#                           with the CUDA toolkit hidden (CMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit),
#                           built, run (train_sin_cos, then infer on its model file), and checked
#                           (readelf -d) not to link libcudart/libcusparse.
#   build/example-cpp-cuda  find_package(kancore CONFIG REQUIRED COMPONENTS CUDA) +
#                           kancore::kancore_cuda: built and linked only (no GPU needed), and
#                           checked to link libcudart and libcusparse.
# When the package was built without CUDA, the second configure must fail with the package's
# "built without CUDA" message (--require-cuda turns that case into an error, as CI wants).
#   usage: examples/cpp/build_both.sh KANCORE_CMAKE_DIR [--require-cuda]
set -euo pipefail
cmake_dir=$(cd "$1" && pwd)
require_cuda=${2:-}
jobs=${JOBS:-2}
cd "$(dirname "$0")/../.."
needed() { readelf -d "$1" | awk '/\(NEEDED\)/ {print $NF}' | tr -d '[]'; }

echo "== examples/cpp against kancore::kancore (CPU only, CUDA toolkit hidden) =="
rm -rf build/example-cpp build/example-cpp-cuda
cmake -S examples/cpp -B build/example-cpp -G Ninja -DCMAKE_BUILD_TYPE=Release --no-warn-unused-cli \
  -Dkancore_DIR="$cmake_dir" -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
cmake --build build/example-cpp -j "$jobs"
for program in train_sin_cos infer; do
  if needed build/example-cpp/$program | grep -E 'libcudart|libcusparse|libcuda\.'; then
    echo "the CPU-only example $program links CUDA libraries (above)" >&2
    exit 1
  fi
done
echo "train_sin_cos (CPU only) links: $(needed build/example-cpp/train_sin_cos | tr '\n' ' ')"
build/example-cpp/train_sin_cos build/example-cpp/sin_cos.safetensors
build/example-cpp/infer build/example-cpp/sin_cos.safetensors 4096 20

echo "== examples/cpp against kancore::kancore_cuda (COMPONENTS CUDA; build and link only) =="
if [ -f "$cmake_dir/kancoreCudaTargets.cmake" ]; then
  cmake -S examples/cpp -B build/example-cpp-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dkancore_DIR="$cmake_dir" -DKANCORE_EXAMPLE_CUDA=ON
  cmake --build build/example-cpp-cuda -j "$jobs"
  libs=$(needed build/example-cpp-cuda/train_sin_cos)
  for lib in libcudart libcusparse; do
    grep -q "^$lib" <<<"$libs" || { echo "the CUDA example does not link $lib" >&2; exit 1; }
  done
  echo "train_sin_cos (CUDA) links: $(tr '\n' ' ' <<<"$libs")"
else
  if [ "$require_cuda" = --require-cuda ]; then
    echo "$cmake_dir has no CUDA component (kancore was built without CUDA)" >&2
    exit 1
  fi
  echo "(the package was built without CUDA: COMPONENTS CUDA must fail with a clear message)"
  if out=$(cmake -S examples/cpp -B build/example-cpp-cuda -G Ninja -Dkancore_DIR="$cmake_dir" \
             -DKANCORE_EXAMPLE_CUDA=ON 2>&1); then
    echo "find_package(kancore COMPONENTS CUDA) succeeded on a CPU-only package" >&2
    exit 1
  fi
  grep -q "was built without CUDA" <<<"$out" || { echo "$out" >&2; echo "unclear failure (above)" >&2; exit 1; }
  echo "ok: configure failed with the package's message"
fi
