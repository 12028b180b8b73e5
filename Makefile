# Every target builds its own virtual environment first, so each works on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# Tests and the demo read datasets from a local folder when there is one (no network).
MINIROBUST_DATA ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)
export MINIROBUST_DATA
# CIFAR-10 in its binary layout: built from ../shared's JPEG copy when there is one, else downloaded
CIFAR_ROOT ?= $(HOME)/.cache/minirobust
CIFAR_BUILDER = ../shared/data/cifar10/build_binary.py

.PHONY: venv check test test-all demo info reproduce reproduce-quick reproduce-cifar10 cifar10-data bench gpu-check lessons lessons-html notebook exercises clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# JupyterLab and nbconvert, for reading and rendering the lessons (the tests need neither)
$(VENV)/.lessons-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[lessons]"
	touch $@

# the developers' inner loop (under 2 minutes on 2 cores): unit and property tests of layers,
# kernels, balls, attacks, training methods, certificates and the exercise checker; `make test` is CI's
CHECK_TESTS = tests/test_layers.py tests/test_kernels.py tests/test_balls.py tests/test_attacks.py \
	tests/test_gradcheck.py tests/test_optim.py tests/test_methods.py tests/test_certify.py \
	tests/test_exercises.py tests/test_checkpoint.py tests/test_model.py tests/test_backend.py

check: venv                ## the quick inner loop (< 2 minutes); make test runs everything CI runs
	$(PY) -m pytest -q -m "not slow and not lessons and not gpu" $(CHECK_TESTS)

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

cifar10-data: venv        ## CIFAR-10 binary files in $(CIFAR_ROOT) (from ../shared's JPEGs, else the canonical download)
	@if [ -f $(CIFAR_ROOT)/cifar10/cifar-10-batches-bin/test_batch.bin ]; then echo "CIFAR-10 is in $(CIFAR_ROOT)"; \
	elif [ -f $(CIFAR_BUILDER) ]; then $(PY) $(CIFAR_BUILDER) $(CIFAR_ROOT); \
	else $(VENV)/bin/minirobust data fetch cifar10 --data-dir $(CIFAR_ROOT); fi

reproduce-cifar10: cifar10-data  ## the paper's CIFAR-10 experiment at width 1/4 (about 90 minutes on 2 cores) -> results/cifar10/
	$(VENV)/bin/minirobust reproduce cifar10 --data-dir $(CIFAR_ROOT) $(ARGS)

bench: venv               ## speed against PyTorch CPU (pip install torch==2.13.0 into .venv for the ratios)
	$(PY) benchmarks/bench_step.py $(ARGS)

gpu-check:                 ## on a GPU machine: install, GPU tests and GPU benchmark in one call (uses its python)
	bash benchmarks/gpu_check.sh

lessons: venv              ## run every lesson notebook headless in SMALL mode, each in a fresh kernel
	MINIROBUST_LESSON_SIZE=small $(PY) -m pytest -q -m lessons tests/test_lessons.py

lessons-html: $(VENV)/.lessons-installed   ## execute the lessons (SMALL) and render them to build/lessons/ (maths shown offline)
	$(PY) lessons/render_html.py

notebook: $(VENV)/.lessons-installed       ## open JupyterLab on lessons/ (ARGS=--no-browser on a server)
	cd lessons && ../$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

exercises: venv            ## check your solutions in lessons/exercises/
	cd lessons && ../$(VENV)/bin/minirobust exercises check all

info: venv
	$(VENV)/bin/minirobust info

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
