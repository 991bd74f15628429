# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off -q --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
# pip lists each package as it goes (not -q): the training extras (torch, transformers) take minutes.
PIP_INSTALL := $(BIN)/pip install --progress-bar off --disable-pip-version-check

$(VENV)/.serve: pyproject.toml | $(BIN)/python
	@echo "== installing the service (serving extras, no torch) into $(VENV)"
	$(PIP_INSTALL) -e '.[serve]'
	touch $@

$(VENV)/.all: pyproject.toml | $(BIN)/python
	@echo "== installing the service, training and test extras into $(VENV) (torch CPU, transformers: a few minutes)"
	$(PIP_INSTALL) -e '.[serve,train,dev]'
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/ser serve --host $(HOST) --port $(PORT)

# Progress per test file, and a closing summary that gives the reason for every skip (-rs).
test: $(VENV)/.all
	$(BIN)/python -m pytest -rfEs

test-fast: $(VENV)/.all
	$(BIN)/python -m pytest -rfEs -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
