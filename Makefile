# Assay: `make up` runs the platform locally (no Docker), `make test` runs the tests,
# `make check` runs the linters, type checker, unit tests and import contract (CI runs it first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-packages up down demo check test audit compose-test bench bench-metrics lint clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml sdk/python/setup.py sdk/python/assay/_speedups.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e sdk/python -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

up: install
	$(PY) -m deploy.local up

# Simulated traffic for two experiments through the real APIs, the Spark job, a summary
# (`make up` runs it once; this runs it again against the running stack).
demo: install
	$(PY) -m deploy.demo

down:
	@if [ -x $(PY) ]; then $(PY) -m deploy.local down; else echo "nothing to stop"; fi

# Debian packages some tests use: chromium + chromium-driver (the scorecard's browser test) and
# docker-compose (static validation of docker-compose.yml). As root we install what is missing;
# otherwise those tests are skipped with the reason printed.
SYSTEM_PACKAGES := chromium chromium-driver docker-compose
system-packages:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v docker-compose >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(SYSTEM_PACKAGES) (Debian) for the browser and compose tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1; } || \
	  echo "could not install $(SYSTEM_PACKAGES): the tests that need them will be skipped"; \
	else echo "$(SYSTEM_PACKAGES) not all found: the tests that need them will be skipped"; fi

test: install system-packages
	$(PY) -m pytest -q

# Known vulnerabilities in the pinned (and installed) dependencies: fails on a finding; when no
# vulnerability service is reachable it says that nothing was audited and does not fail. It reads
# the network, so it is its own target: `make test` does not run it (CI runs it after the tests).
audit: install
	$(PY) -m deploy.audit

# docker-compose.yml on a real Docker engine (an isolated dockerd it starts, installing Debian's
# docker.io/docker-compose/debootstrap as root when missing): offline image build, the default
# profile end to end, the cluster profile, scale-out, teardown; every step timed. Where no
# engine can run it prints why and exits 0. See docs/deploy.md.
compose-test: install
	$(PY) -m deploy.compose_test

bench: install
	$(PY) -m bench.assignment
	$(PY) -m bench.exposure
	$(PY) -m bench.load

# Spark metrics job beside DuckDB SQL at 1M/5M/10M events (~15 min on 2 cores); prints Markdown.
bench-metrics: install
	$(PY) -m bench.metrics

lint: install
	$(PY) -m ruff check sdk services deploy bench tests
	$(PY) -m ruff format --check sdk services deploy bench tests
	$(PY) -m mypy sdk/python/assay services deploy

# The fast gate, no servers started: lint, formatting, types, the unit tests and the import
# contract (services import services.common and the SDK, never each other).
check: lint
	$(PY) -m pytest -q tests/unit
	$(VENV)/bin/lint-imports

clean: down
	rm -rf .assay
