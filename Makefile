# The front door: `make sandbox` runs the hub with everything simulated on loopback, `make demo`
# plays a utility's day through it, `make unit` runs the fast tests, `make test` runs every
# check. Each creates .venv and installs the project when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
PROMTOOL := /usr/bin/promtool
NGINX := /usr/sbin/nginx

.PHONY: sandbox demo test lint typecheck unit bench clean screenshots

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

sandbox: $(INSTALLED)
	$(BIN)/derms-bridge sandbox $(ARGS)

# A utility's day through the sandbox, then its summary (docs/sandbox.md); exits 1 when
# something was lost. `make demo SEED=7 SCALE=0.1` plays another, smaller day.
SEED ?= 1
SCALE ?= 1
demo: $(INSTALLED)
	$(BIN)/derms-bridge sandbox --demo --seed $(SEED) --demo-scale $(SCALE) $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

MYPY := $(BIN)/mypy src tests $(wildcard bench/*.py bench/*/*.py)

typecheck: $(INSTALLED)
	$(MYPY)

# The browser tests drive Debian's Chromium; installed once, never a downloaded browser.
$(CHROMIUM):
	apt-get update && apt-get install -y chromium

# tests/unit alone: no database server, no network server, no subprocess, no browser.
unit: $(INSTALLED)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# deploy/prometheus's rules are checked and tested by Debian's promtool (package prometheus).
$(PROMTOOL):
	apt-get update && apt-get install -y prometheus

# deploy/nginx's reverse proxy example is checked by Debian's nginx (`nginx -t`).
$(NGINX):
	apt-get update && apt-get install -y nginx

# pytest-xdist's workers for `make test`, each a pytest process with servers and databases of
# its own (tests/README.md). The suite mostly waits on loopback servers, hub processes and
# timers, so more workers than CI's two cores pays. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 4
PYTEST = $(BIN)/pytest --numprocesses $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# mypy (about 20 s of one core) runs beside pytest, into $(VENV)/typecheck.out: printed after
# pytest's summary when it finds anything, which fails `make test` as a failed test does.
test: lint $(CHROMIUM) $(PROMTOOL) $(NGINX)
	@echo "$(MYPY) > $(VENV)/typecheck.out, beside:"
	@echo "$(PYTEST)"
	@$(MYPY) > $(VENV)/typecheck.out 2>&1 & typecheck=$$!; \
	$(PYTEST); tests=$$?; \
	wait $$typecheck || { cat $(VENV)/typecheck.out; exit 1; }; \
	exit $$tests

# Rewrites docs/console/*.png from the browser tests; the demo's (demo-*.png) from a full
# day, about four minutes.
screenshots: $(INSTALLED) $(CHROMIUM)
	DERMS_BRIDGE_CONSOLE_SCREENSHOTS=1 DERMS_BRIDGE_DEMO_SCALE=1 DERMS_BRIDGE_TEST_POSTGRES=off \
		$(BIN)/pytest -q tests/browser

bench: $(INSTALLED)
	$(BIN)/python bench/enrollment_batch.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
