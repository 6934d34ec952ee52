# The README's two commands:  `make demo`  (set up, then train a small KAN)  and  `make test`.
# Everything lands in .venv/ and build/ inside the checkout.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
JOBS   ?= $(shell nproc)
CMAKE_TEST_DIR := build/cpp-tests

.PHONY: demo test test-cpp test-python install venv system-deps bench clean

demo: install
	$(PY) examples/train_regression.py

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

bench: install
	$(PY) benchmarks/bench_c0_cpu.py
	$(PY) benchmarks/bench_bspline_cpu.py

clean:
	rm -rf build $(VENV)
