# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Both create .venv and install biaslab into it first; torch is pinned to the 2.13.0 CPU wheel.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= runs/demo.sqlite
REPORT ?= report

.PHONY: install browser demo test bench gpu-wheels clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Reproduce the headline claim (learned completions are less sensitive than random ones) on CPU,
# store every run in SQLite, and write the HTML report.
demo: install
	@echo "demo: reproducing lowsens-learned-below-random on CPU (about 3-5 min), store $(STORE); loading torch..."
	$(BIN)/biaslab reproduce lowsens-learned-below-random --preset cpu --workers 2 --max-members 2 \
		--store $(STORE) --report $(REPORT)

test: install browser
	$(BIN)/python -m pytest

# The report's browser tests need Chromium and its driver: Debian's packages, installed when
# apt-get is there and we may use it (root, or sudo without a password); otherwise say how.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make: no Chromium: the browser tests will be skipped (install chromium and" \
		"chromedriver; under CI=true they fail)" >&2; fi

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
