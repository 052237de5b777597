# The README's two commands: `make quickstart` and `make test`. Both create .venv on first use.
# Development: `make test-fast` (the suite without the slow end-to-end tests), `make lint` (what CI checks
# before the tests: ruff, mypy and the import contract of docs/architecture.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARCH := $(shell uname -m)
# torch/torchvision pairs known to work with torchvision's NMS on each architecture (see README).
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif
WORKDIR ?= .edgepipe/quickstart

.PHONY: install quickstart test test-fast lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[test]" $(TORCH_PINS)
	touch $@

install: $(BIN)/.installed

quickstart: $(BIN)/.installed
	$(BIN)/edgepipe run examples/quickstart.yaml --workdir $(WORKDIR)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .edgepipe .pytest_cache
