# The two set-up commands of the README:
#   make demo   create .venv, install everything, run the main job on the built-in example
#   make test   create .venv, install everything, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output

.PHONY: install demo test test-slow

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first, pinned: an unpinned torch would pull the CUDA build.
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[all]"
	touch $@

demo: install
	$(BIN)/cryomaps demo --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow
