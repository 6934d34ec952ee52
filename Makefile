# The README's two commands:  `make demo`  (set up, then train a small KAN)  and  `make test`.
# Everything lands in .venv/ and build/ inside the checkout.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
JOBS   ?= $(shell nproc)
CMAKE_TEST_DIR := build/cpp-tests

.PHONY: demo test test-cpp test-python install venv system-deps bench clean example-cpp fuzz sanitize

demo: install
	$(PY) examples/train_regression.py
	$(PY) examples/discover_formula.py

test: test-cpp test-python

# System packages (Debian): a compiler, CMake, Eigen, GoogleTest. Installed when missing and root.
system-deps:
	@if [ ! -f /usr/include/eigen3/Eigen/Core ] || [ ! -d /usr/src/googletest ] || ! command -v cmake >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q --no-install-recommends g++ cmake ninja-build libeigen3-dev libgtest-dev googletest python3-venv; \
	  else \
	    echo "Missing system packages; run: sudo apt-get install g++ cmake ninja-build libeigen3-dev libgtest-dev python3-venv" >&2; exit 1; \
	  fi; \
	fi

$(VENV)/.deps-stamp: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

venv: system-deps $(VENV)/.deps-stamp

install: venv
	$(PIP) install -q --no-build-isolation .

test-cpp: system-deps
	cmake -S . -B $(CMAKE_TEST_DIR) -G Ninja -DKANCORE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CMAKE_TEST_DIR) -j $(JOBS)
	ctest --test-dir $(CMAKE_TEST_DIR) --output-on-failure -j $(JOBS)

test-python: install
	$(PY) -m pytest tests/python

# The standalone C++ example (examples/cpp) built against the pip-installed package's CMake config,
# once against the CPU-only kancore::kancore (run; must not link libcudart/libcusparse) and once
# against kancore::kancore_cuda (COMPONENTS CUDA; built and linked only). EXAMPLE_CPP_FLAGS=--require-cuda
# makes a package without CUDA an error (CI). For a `cmake --install` prefix instead, run
# examples/cpp/build_both.sh PREFIX/lib/cmake/kancore directly.
EXAMPLE_CPP_FLAGS ?=
example-cpp: install
	JOBS=$(JOBS) examples/cpp/build_both.sh "$$($(PY) -m kancore --cmake-dir)" $(EXAMPLE_CPP_FLAGS)

# libFuzzer run of the model loader (Clang): seed corpus from valid files, FUZZ_SECONDS of fuzzing.
FUZZ_SECONDS ?= 240
fuzz:
	CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DKANCORE_BUILD_FUZZERS=ON -DKANCORE_BUILD_TESTS=OFF \
	  -DKANCORE_CUDA=OFF -DKANCORE_NATIVE_ARCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build/fuzz -j $(JOBS)
	mkdir -p build/fuzz/corpus build/fuzz/artifacts
	build/fuzz/tests/fuzz/fuzz_make_corpus build/fuzz/corpus
	cp tests/fuzz/regressions/* build/fuzz/corpus/ 2>/dev/null || true
	build/fuzz/tests/fuzz/fuzz_model_load build/fuzz/corpus -dict=tests/fuzz/model.dict \
	  -max_total_time=$(FUZZ_SECONDS) -jobs=1 -max_len=4096 -artifact_prefix=build/fuzz/artifacts/ -print_final_stats=1

# ASan + UBSan (GCC, CUDA off; not part of CI, about 15 minutes here): the GoogleTest suite, then
# the Python suite against an instrumented kancore._core, staged with the package's .py files
# under build/asan/pkg and run with the sanitizer runtimes preloaded. Any report fails the run.
SAN_DIR := build/asan
SAN_RT = $$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libubsan.so)
sanitize: venv
	cmake -S . -B $(SAN_DIR) -G Ninja -DKANCORE_SANITIZE=ON -DKANCORE_CUDA=OFF -DKANCORE_BUILD_TESTS=ON \
	  -DKANCORE_BUILD_PYTHON=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -Dpybind11_DIR="$$($(PY) -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(abspath $(PY))"
	cmake --build $(SAN_DIR) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(SAN_DIR) --output-on-failure -j $(JOBS)
	rm -rf $(SAN_DIR)/pkg && mkdir -p $(SAN_DIR)/pkg/kancore
	cp python/kancore/*.py python/kancore/py.typed $(SAN_DIR)/pkg/kancore/
	cp $(SAN_DIR)/python/_core*.so $(SAN_DIR)/pkg/kancore/
	LD_PRELOAD="$(SAN_RT)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  KANCORE_SANITIZED=1 PYTHONPATH=$(SAN_DIR)/pkg $(PY) -m pytest tests/python -q -p no:cacheprovider

bench: install
	$(PY) benchmarks/bench_c0_cpu.py
	$(PY) benchmarks/bench_bspline_cpu.py

clean:
	rm -rf build $(VENV)
