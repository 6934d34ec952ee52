#!/usr/bin/env bash
# One device call that checks the CUDA backend end to end:
#   1. build GoogleTest (from .carry/) and the C++ tests with CUDA for this GPU's architecture
#   2. ctest (the CUDA GoogleTests use the CPU kernels as their oracle)
#   3. install kancore (CUDA on) + kanditioned into a venv that sees the machine's torch; pytest
#   4. compute-sanitizer memcheck and racecheck over the CUDA GoogleTests
#   5. benchmarks/bench_c0_gpu.py and bench_bspline_gpu.py
# and prints a short table last (step, status, seconds), after the benchmark's table.
#
# Needs .carry/ from benchmarks/prepare_carry.sh (the machine has no package registry):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".carry"])
# Steps can be picked: `gpu_check.sh build test` (default: all = build test python sanitize bench).
# Build outputs (build/gpu-*) are reused when the machine is still warm.
# Logs go to $OUT/gpu_check/ (or build/gpu_check/ without $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CARRY=$ROOT/.carry
LOGS=${OUT:-$ROOT/build}/gpu_check
mkdir -p "$LOGS"
JOBS=${JOBS:-$(nproc)}
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(all)
want() { for s in "${STEPS[@]}"; do [ "$s" = all ] || [ "$s" = "$1" ] && return 0; done; return 1; }

SUMMARY=()
FAILED=0
# run_step NAME CMD...: runs CMD with its output in $LOGS/NAME.log (tail shown on failure).
run_step() {
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  if "$@" >"$LOGS/$name.log" 2>&1; then
    SUMMARY+=("$(printf '%-22s %-6s %5ss' "$name" ok $((SECONDS - t0)))")
  else
    local rc=$?
    FAILED=1
    SUMMARY+=("$(printf '%-22s %-6s %5ss  (rc %s, see %s)' "$name" FAIL $((SECONDS - t0)) "$rc" "$LOGS/$name.log")")
    tail -n 40 "$LOGS/$name.log"
  fi
}

# ---- environment ---------------------------------------------------------------------------
if [ ! -d "$CARRY/prefix/include/eigen3" ] || [ ! -f "$CARRY/googletest/CMakeLists.txt" ]; then
  echo "gpu_check: .carry/ is missing or incomplete: run benchmarks/prepare_carry.sh here and pass carry=[\".carry\"]" >&2
  exit 2
fi
# KANCORE_CUDA_ARCH overrides the detection (e.g. 90 for a build-only dry run without a GPU).
ARCH=${KANCORE_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')}
[ -n "$ARCH" ] || ARCH=native
{
  echo "date: $(date -u +%FT%TZ)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1
  nvcc --version 2>&1 | tail -n 2
  echo "CMAKE_CUDA_ARCHITECTURES=$ARCH  jobs=$JOBS"
} | tee "$LOGS/env.txt"

PREFIX=$ROOT/build/gpu-prefix          # GoogleTest installed here; Eigen comes from .carry/prefix
CMAKE_PREFIXES="$CARRY/prefix;$PREFIX"
VENV=$ROOT/build/gpu-venv
PY=$VENV/bin/python
TESTS=$ROOT/build/gpu-tests/tests/cpp/kancore_tests

# ---- 1. build --------------------------------------------------------------------------------
build_gtest() {
  [ -f "$PREFIX/lib/cmake/GTest/GTestConfig.cmake" ] && return 0
  cmake -S "$CARRY/googletest" -B build/gpu-gtest -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" -DBUILD_GMOCK=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON &&
  cmake --build build/gpu-gtest -j "$JOBS" && cmake --install build/gpu-gtest
}
build_tests() {
  cmake -S . -B build/gpu-tests -G Ninja -DCMAKE_BUILD_TYPE=Release -DKANCORE_BUILD_TESTS=ON \
        -DKANCORE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_PREFIX_PATH="$CMAKE_PREFIXES" \
        -DEigen3_DIR="$CARRY/prefix/share/eigen3/cmake" &&
  cmake --build build/gpu-tests -j "$JOBS"
}
if want build; then
  run_step gtest-build build_gtest
  run_step cpp-build build_tests
fi

# ---- 2. C++ tests ----------------------------------------------------------------------------
if want test; then
  run_step ctest ctest --test-dir build/gpu-tests --output-on-failure -j 4
  # The CUDA tests must have run, not skipped: a skip here means the GPU was not usable.
  run_step cuda-tests-ran bash -c "'$TESTS' --gtest_filter='*Cuda*:-*WithoutCudaBackend*' 2>&1 | tee /dev/stderr | grep -q 'SKIPPED \]' && exit 1 || exit 0"
fi

# ---- 3. Python -------------------------------------------------------------------------------
install_python() {
  [ -x "$PY" ] || python3 -m venv --system-site-packages "$VENV" || return 1
  "$PY" -m pip install -q --no-index --no-deps "$CARRY"/wheels/kanditioned-*.whl &&
  "$PY" -m pip install -v --no-index --no-deps --no-build-isolation \
      -C cmake.define.KANCORE_CUDA=ON -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" \
      -C cmake.define.Eigen3_DIR="$CARRY/prefix/share/eigen3/cmake" -C build-dir=build/gpu-wheel . &&
  "$PY" -c "import kancore, torch; assert kancore._core.built_with_cuda(), 'kancore built without CUDA'; print('kancore', kancore.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())"
}
if want python; then
  run_step py-install install_python
  run_step pytest "$PY" -m pytest tests/python -ra -q -p no:cacheprovider
  run_step pytest-cuda-ran bash -c "'$PY' -m pytest tests/python/test_cuda.py tests/python/test_bspline_cuda.py -q -ra -p no:cacheprovider 2>&1 | tee /dev/stderr | grep -q 'no CUDA device visible' && exit 1 || exit 0"
fi

# ---- 4. compute-sanitizer --------------------------------------------------------------------
if want sanitize; then
  SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  # memcheck over every CUDA test; racecheck (slow: it checks each shared-memory access) over
  # the float tests, which run the same kernels and code paths as double.
  run_step memcheck "$SAN" --tool memcheck --error-exitcode 9 --leak-check full "$TESTS" --gtest_filter='*Cuda*' --gtest_brief=1
  run_step racecheck "$SAN" --tool racecheck --error-exitcode 9 --racecheck-report all "$TESTS" --gtest_filter='C0Cuda.*:*C0CudaParam*float*:BsplineCuda.Float32*' --gtest_brief=1
  run_step synccheck "$SAN" --tool synccheck --error-exitcode 9 "$TESTS" --gtest_filter='C0Cuda.*:*C0CudaParam*float_gather*' --gtest_brief=1
fi

# ---- 5. benchmarks ---------------------------------------------------------------------------
if want bench; then
  run_step bench "$PY" benchmarks/bench_c0_gpu.py --out "${OUT:-$ROOT/benchmarks/results}"
  run_step bench-bspline "$PY" benchmarks/bench_bspline_gpu.py --out "${OUT:-$ROOT/benchmarks/results}"
  [ -f "$LOGS/bench.log" ] && sed -n '/^| /,$p' "$LOGS/bench.log" | head -n 60
  [ -f "$LOGS/bench-bspline.log" ] && sed -n '/^| /,$p' "$LOGS/bench-bspline.log" | head -n 20
fi

echo
echo "== gpu_check summary ($(head -n 3 "$LOGS/env.txt" | tail -n 1 | cut -d, -f1))"
printf '%s\n' "${SUMMARY[@]}"
exit $FAILED
