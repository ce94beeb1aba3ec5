# Assay: `make up` runs the platform locally (no Docker), `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up down test bench lint clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e sdk/python -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

up: install
	$(PY) -m deploy.local up

down:
	@if [ -x $(PY) ]; then $(PY) -m deploy.local down; else echo "nothing to stop"; fi

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m bench.assignment

lint: install
	$(PY) -m ruff check sdk services deploy bench tests
	$(PY) -m mypy sdk/python/assay services deploy

clean: down
	rm -rf .assay
