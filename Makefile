# The README's two commands: `make demo` and `make test`. Both create .venv with pip when it
# is missing and install the project with its dev extra; torch and torchvision come pinned
# from constraints.txt (the machines here install those builds from local files).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-out

.PHONY: setup system-packages demo test test-all bench bench-full lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# chromium (page checks) and dataset-fashion-mnist (--data fashion-mnist), when root with apt-get
system-packages:
	@bash scripts/install-system-packages

demo: $(STAMP)
	$(VENV)/bin/mprobe demo --out $(DEMO_OUT)

test: $(STAMP) system-packages
	$(PY) -m pytest

test-all: $(STAMP) system-packages
	$(PY) -m pytest -m ""

# every benchmark at its small size (a few minutes each on 2 cores), then the summary table
bench: $(STAMP)
	$(PY) benchmarks/run_all.py --quick

# the goals' sizes (hours on 2 cores; ResNet-18 and the kNN grid dominate)
bench-full: $(STAMP)
	$(PY) benchmarks/run_all.py --full

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache build *.egg-info
