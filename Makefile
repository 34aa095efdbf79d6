# make run   — set up (once) and start the quickstart: two echo backends and a gateway
# make test  — set up (once), then lint, type-check, install Chromium if missing (apt) and run the tests
# make bench — set up (once), then run every benchmark (docs/benchmarks.md); BENCH_ARGS=--quick for a short run
#
# Set-up is idempotent: .venv is created when absent and packages are installed
# again only when pyproject.toml or the conformance kit's requirements change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the conformance kit, if you have it (README, "Conformance")
KIT := $(or $(PORTICO_CONFORMANCE_KIT),../shared/conformance)
KIT_REQUIREMENTS := $(KIT)/requirements.txt
STAMP := $(VENV)/.portico-setup
SETUP_INPUTS := pyproject.toml $(wildcard $(KIT_REQUIREMENTS))

.PHONY: setup run test lint browser bench clean-setup

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	if [ -f $(KIT_REQUIREMENTS) ]; then $(BIN)/python -m pip install -q -r $(KIT_REQUIREMENTS); fi
	touch $@

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/quickstart/run.sh

lint: setup
	$(BIN)/ruff check src bench tools
	$(BIN)/mypy src bench tools
	$(BIN)/lint-imports

test: lint browser
	$(BIN)/pytest

# Debian's Chromium for the topology page's browser test (Playwright drives it; it
# downloads no browser of its own). Installed with apt-get when missing and possible.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "chromium could not be installed: tests/test_topology_page.py will be skipped" >&2

# Installs nginx, HAProxy and wrk with apt-get when missing (root). Not part of `make test`.
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean-setup:
	rm -f $(STAMP)
