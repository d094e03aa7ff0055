# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Both create .venv and install biaslab into it first; torch is pinned to the 2.13.0 CPU wheel.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= runs/demo.sqlite
REPORT ?= report

.PHONY: install demo test bench gpu-wheels clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Reproduce the headline claim (learned completions are less sensitive than random ones) on CPU,
# store every run in SQLite, and write the HTML report.
demo: install
	$(BIN)/biaslab reproduce lowsens-learned-below-random --preset cpu --workers 2 --max-members 2 \
		--store $(STORE) --report $(REPORT)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/bench_all.py --device cpu

# Wheels the GPU machine lacks (it has torch, numpy, pyyaml, safetensors, tqdm, matplotlib), for
# benchmarks/gpu_suite.sh: carry .whl there.
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5

clean:
	rm -rf $(VENV) runs report
