# Every target builds its own virtual environment first, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# Tests and the demo read datasets from a local folder when there is one (no network).
MINIROBUST_DATA ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)
export MINIROBUST_DATA

.PHONY: venv test test-all demo info reproduce reproduce-quick bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: venv                 ## the default test run (slow end-to-end runs deselected)
	$(PY) -m pytest -q

test-all: venv             ## every test, slow ones included
	$(PY) -m pytest -q -m ""

demo: venv                 ## train a small net and print its accuracy
	$(VENV)/bin/minirobust demo

reproduce: venv           ## the paper's MNIST experiment end to end -> results/mnist/
	$(VENV)/bin/minirobust reproduce mnist $(ARGS)

reproduce-quick: venv     ## the same on a subset, one epoch (about 1.5 minutes)
	$(VENV)/bin/minirobust reproduce mnist --quick $(ARGS)

bench: venv               ## speed against PyTorch CPU (pip install torch==2.13.0 into .venv for the ratios)
	$(PY) benchmarks/bench_step.py $(ARGS)

info: venv
	$(VENV)/bin/minirobust info

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
