# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DB     ?= db/catalog.db
HOST   ?= 127.0.0.1
PORT   ?= 8001

.PHONY: run install harvest serve lint test tools debian-tools clean publish-build chaos bench

# Creates .venv and installs the project with its test and lint tools; redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

## make run: install, harvest PubMed into $(DB), serve the catalog on http://$(HOST):$(PORT)/
## (`make run PORT=8002 HOST=0.0.0.0` for another address). The address is checked first, so
## that a port in use stops it in one line before the harvest, not after.
PORT_CHECK := $(BIN)/python -m harvest.port $(HOST) $(PORT)
HARVEST    := $(BIN)/python -m harvest run --db $(DB)
SERVE      := $(BIN)/datasette serve db/ --host $(HOST) --port $(PORT)

run: install
	@$(PORT_CHECK)
	$(HARVEST)
	$(SERVE)

harvest: install
	$(HARVEST)

serve: install
	@$(PORT_CHECK)
	$(SERVE)

## make lint: ruff (lint rules, then the format of every file not yet listed as unformatted in
## pyproject.toml) and mypy, all configured in pyproject.toml; `make test` runs it first.
LINT_PATHS := harvest db tests bench
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

## make test: `make lint` first; then the offline test suite (its own E-utilities stand-in,
## temporary catalogs), its files spread over every core, but the tests marked `dated`: those run
## next under a clock 400 days ahead (libfaketime; the monotonic clock stays real so that timeouts
## hold), so that no test passes only near the day it was written (running them at today's date
## as well cost a minute and proved nothing more). `.venv/bin/python -m pytest tests/FILE` runs
## one file, its dated tests at today's date.
# --no-loadscope-reorder: pytest-xdist otherwise queues the files by their number of tests, and
# the longest builds (tests/conftest.py's LONGEST_FIRST) would start last and run alone at the end.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder
# Debian 12's libfaketime 0.9.10 breaks monotonic sleeps (Python's time.sleep) when the monotonic
# clock is not faked; tests/clock/monotonic_sleep.c, preloaded first, sends those to the kernel.
CLOCK_FIX := build/monotonic_sleep.so
FAKETIME_LIB = $(firstword $(wildcard /usr/lib/*/faketime/libfaketime.so.1))
SHIFTED_CLOCK = LD_PRELOAD="$(abspath $(CLOCK_FIX)) $(FAKETIME_LIB)" FAKETIME=+400d FAKETIME_DONT_FAKE_MONOTONIC=1
test: lint tools $(CLOCK_FIX)
	$(PYTEST) -m "not dated"
	$(SHIFTED_CLOCK) $(PYTEST) -m dated -p no:cacheprovider

$(CLOCK_FIX): tests/clock/monotonic_sleep.c
	@mkdir -p $(dir $@)
	cc -shared -fPIC -O2 -o $@ $< -ldl

## make tools: Debian's packages the tests drive (Chromium for the browser tests, faketime for the
## shifted clock, npm for axe-core, pandoc and biber that read the BibTeX and CSL-JSON exports back
## as reference managers do), installed with apt-get only where they are missing and we are
## root; anyone else is told in one line what to install. Never a browser download of Playwright's
## own. Then axe-core, the accessibility rules the browser tests run in each page, from npm at the
## version tests/package-lock.json pins, into tests/node_modules (no network when the tests run).
DEBIAN_TOOLS := chromium:/usr/bin/chromium faketime:/usr/bin/faketime npm:/usr/bin/npm pandoc:/usr/bin/pandoc \
                biber:/usr/bin/biber
AXE := tests/node_modules/axe-core/axe.min.js
tools: debian-tools $(AXE)

$(AXE): tests/package.json tests/package-lock.json | debian-tools
	cd tests && npm ci --no-audit --no-fund --loglevel=error
	touch $@

debian-tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do test -x "$${pair#*:}" || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	  else echo "make test needs Debian's$$missing: run 'sudo apt-get install$$missing', then make test again" >&2; exit 1; fi; \
	fi

## make publish-build: an immutable copy of $(DB) in $(PUBLISH_DIR) with inspect-data.json,
## built beside the published file and renamed over it; serve it with `datasette $(PUBLISH_DIR)`
PUBLISH_DIR ?= build/publish
publish-build: install
	$(BIN)/python db/publish.py $(DB) $(PUBLISH_DIR)

## make chaos: the harvester under faults, kills, a full disk, two runs at once and hostile
## answers, and the served catalog under crafted SQL and load; a table on stdout, JSON in $(CHAOS_JSON)
## (the fast subset, `python -m tests.chaos --fast`, is part of `make test`)
CHAOS_JSON ?= build/chaos.json
chaos: install
	@mkdir -p $(dir $(CHAOS_JSON))
	$(BIN)/python -m tests.chaos --json $(CHAOS_JSON)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info tests/node_modules

## make bench: request economy, parse, import and 1,000,000-article catalog latency (about 21 minutes);
## prints the tables, writes bench/results.json and bench/RESULTS.md. BENCH_CLONE_FILES=10 imports
## 300,000 cloned records instead of 120,000; BENCH_DIR=path keeps the clones and catalogs.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench
