# Two entry points for a fresh machine: `make` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all main test test-slow trt-conformance clean

all: main

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first, so nothing below can pull a CUDA build of torch.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,rtx,search]'
	touch $(STAMP)

main: $(STAMP)
	$(BIN)/edge build --target jetson-orin

# The suite runs on two processes (pytest-xdist): this machine's and CI's two cores.
TEST_PROCESSES ?= 2

# The TensorRT conformance harness (tests/tensorrt_conformance) runs in the suite: the real Python
# bindings of TensorRT 8.6-11.4 from PyPI, cached in build/tensorrt-conformance/ (the first run
# downloads ~6 MB). Here a wheel that cannot be had fails the run instead of skipping.
TRT_REQUIRED := AT2SELD_TRT_CONFORMANCE_REQUIRED=1

test: $(STAMP)
	tests/search/install_postgresql.sh  # the multi-worker search test starts its own PostgreSQL server
	$(TRT_REQUIRED) $(BIN)/python -m pytest -q -n $(TEST_PROCESSES)
	$(MAKE) --no-print-directory cpp-test cpp-asan

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The conformance matrix alone, timed.
trt-conformance: $(STAMP)
	@start=$$(date +%s%N); $(TRT_REQUIRED) $(BIN)/python -m pytest -q -n $(TEST_PROCESSES) tests/tensorrt_conformance; \
	rc=$$?; echo "trt-conformance: $$(( ($$(date +%s%N) - start) / 1000000 )) ms"; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info

include deploy/cpp/cpp.mk
