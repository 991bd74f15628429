# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The lock pins torch's CPU build (torch==2.13.0+cpu), which is not on PyPI: on a machine whose
# pip does not already find it, add PyTorch's CPU index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
INDEX_FLAGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: serve test test-fast lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off -q --upgrade pip

# Installs come from the lock files in requirements/ (exact versions, sha256 hashes), then the
# project itself without dependencies. Stamp files: reinstall only when a lock file changes.
# pip lists each package as it goes (not -q): the training extras (torch, transformers) take minutes.
PIP_INSTALL := $(BIN)/pip install --progress-bar off --disable-pip-version-check

$(VENV)/.serve: requirements/serve.txt | $(BIN)/python
	@echo "== installing the service (serving extras, no torch) into $(VENV)"
	$(PIP_INSTALL) --require-hashes -r requirements/serve.txt
	$(PIP_INSTALL) --no-deps -e .
	touch $@

$(VENV)/.all: requirements/all.txt | $(BIN)/python
	@echo "== installing every extra (serving, training, tests) into $(VENV) (torch CPU, transformers: a few minutes)"
	$(PIP_INSTALL) $(INDEX_FLAGS) --require-hashes -r requirements/all.txt
	$(PIP_INSTALL) --no-deps -e .
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	$(BIN)/ser serve --host $(HOST) --port $(PORT)

# Progress per test file, and a closing summary that gives the reason for every skip (-rs).
test: $(VENV)/.all
	$(BIN)/python -m pytest -rfEs

test-fast: $(VENV)/.all
	$(BIN)/python -m pytest -rfEs -m "not slow"

# Refresh both lock files from pyproject.toml (the newest releases its ranges admit; ~6 min).
# requirements/all.txt holds every extra; requirements/serve.txt the serving image's subset,
# constrained to the same versions.
LOCK_FLAGS := --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(INDEX_FLAGS)
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q 'pip-tools==7.7.0'
	.venv-lock/bin/pip-compile $(LOCK_FLAGS) --upgrade --all-extras -o requirements/all.txt pyproject.toml
	@# extras that include other extras name the project itself: it comes from the checkout, not the lock
	sed -i '/^speech-emotion-distill @/,+1d' requirements/all.txt
	.venv-lock/bin/pip-compile $(LOCK_FLAGS) --upgrade --extra serve -c requirements/all.txt -o requirements/serve.txt pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache
