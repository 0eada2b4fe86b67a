# The front door: `make sandbox` runs the hub with everything simulated on loopback,
# `make test` runs every check. Each creates .venv and installs the project when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: sandbox test lint typecheck unit bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

sandbox: $(INSTALLED)
	$(BIN)/derms-bridge sandbox $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(INSTALLED)
	$(BIN)/mypy src tests $(wildcard bench/*.py)

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(INSTALLED)
	$(BIN)/python bench/enrollment_batch.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
