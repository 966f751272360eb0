# The two commands a fresh machine needs: `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYENV_ROOT ?= $(HOME)/.pyenv
# Django 6 needs Python >= 3.12: prefer it, fall back to whatever python3 is.
PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python) $(shell command -v python3.12) $(shell command -v python3))
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help venv build build-base prune-build services services-install services-stop test test-compiled test-pure test-spatialite demo bench lint clean dist dist-check matrix bench-asv docs

help:
	@echo "make demo   - build and run the example site on 127.0.0.1:8000 (/metrics live)"
	@echo "make test   - venv, compiled core, real services, whole suite on both cores"
	@echo "make bench  - side-by-side benchmarks (bare Django, ours compiled/pure, upstream 2.5.0)"
	@echo "make docs   - the docs site (docs/ -> build/docs), strict: a warning fails"

# Two install sets. The base (build tools + the package with its runtime dependencies:
# Django, prometheus_client) needs nothing but Python and pip: `make demo` uses only it.
# The test set builds DB drivers (mysqlclient needs pkg-config and libmariadb-dev), so it
# runs only after `scripts/services.sh install` has put the Debian packages in place.
$(VENV)/.base: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=77" wheel "Cython>=3.1"
	# A venv made before the rename to django-prometheus-compiled holds the same files under
	# the old name: drop that record first (both would own django_prometheus; check W001).
	$(PY) -m pip uninstall -q -y django-prometheus 2>/dev/null || true
	$(PY) -m pip install -q --no-build-isolation --force-reinstall .
	touch $@

$(VENV)/.deps: $(VENV)/.base pyproject.toml | services-install
	$(PY) -m pip install -q build ruff
	$(PY) -m pip install -q --no-build-isolation ".[test,docs]"
	touch $@

venv: $(VENV)/.deps

# A real (non-editable) install: the tests import the built package, compiled core included.
build-base: $(VENV)/.base prune-build
	$(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .

build: venv prune-build
	$(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .

# setuptools copies into build/lib* and never deletes there: a module renamed or deleted in
# src/ or _core/ would still ship from an earlier build's copy. Drop the copied .py files
# (copied again, cheaply) and every compiled module whose .pyx is gone (the rest stay built).
prune-build:
	@find build/lib build/lib.* -path '*django_prometheus*' -name '*.py' -delete 2>/dev/null || true
	@for so in build/lib.*/django_prometheus/_core/*_c.*; do \
		[ -e "$$so" ] || continue; stem=$$(basename "$$so"); stem=$${stem%%.*}; \
		[ -e "_core/$$stem.pyx" ] || rm -f "$$so"; \
	done

services-install:
	scripts/services.sh install

services: services-install
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

test-compiled: build services
	$(PY) -m pytest $(PYTEST_ARGS)

test-pure: build services
	DJANGO_PROMETHEUS_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

# SpatiaLite is a loadable SQLite extension, and pyenv's Pythons are built without
# extension loading: run the DB suite (SpatiaLite included) on Debian's Python too.
SYSTEM_PYTHON ?= /usr/bin/python3
SPATIALITE_VENV ?= .venv-spatialite
test-spatialite: services
	test -x $(SPATIALITE_VENV)/bin/python || $(SYSTEM_PYTHON) -m venv $(SPATIALITE_VENV)
	$(SPATIALITE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SPATIALITE_VENV)/bin/python -m pip install -q "setuptools>=77" wheel "Cython>=3.1"
	$(SPATIALITE_VENV)/bin/python -m pip install -q --no-build-isolation --force-reinstall --no-deps .
	$(SPATIALITE_VENV)/bin/python -m pip install -q --no-build-isolation ".[test]"
	$(SPATIALITE_VENV)/bin/python -c 'import sqlite3; c = sqlite3.connect(":memory:"); c.enable_load_extension(True); c.load_extension("mod_spatialite")'
	$(SPATIALITE_VENV)/bin/python -m pytest tests/test_db.py
	DJANGO_PROMETHEUS_NO_EXTENSIONS=1 $(SPATIALITE_VENV)/bin/python -m pytest tests/test_db.py

test: test-compiled test-pure docs test-spatialite dist-check matrix

# What Quickstart installs until a release is published: the sdist and a compiled wheel built
# from it, as dist/django_prometheus_compiled-<version>.tar.gz and -<version>-<tags>.whl.
dist: $(VENV)/.base
	$(PY) -m pip install -q build
	rm -rf dist
	$(PY) -m build --sdist --outdir dist .
	$(PY) -m build --wheel --outdir dist dist/django_prometheus_compiled-*.tar.gz
	ls -l dist

# sdist -> wheel built from it -> fresh venv without Cython/compiler: compiled core imported;
# and the pure py3-none-any wheel from the same sdist installs and works.
dist-check:
	scripts/dist_check.sh $(PYTHON)

# pyenv's 3.10-3.13 x Django 4.2/5.2/6.0/6.1 where supported: core, cache, middleware tests.
matrix: services
	PYENV_ROOT=$(PYENV_ROOT) scripts/matrix.sh

# DEMO_PORT (8000), DEMO_TRAFFIC=1, DEMO_DB=postgresql, DEMO_CACHE=redis: see examples/demo/demo/settings.py
# Needs nothing but Python and pip: no services, no DB drivers, no test tools, no root.
# The optional backends' drivers only when asked for (make-time: `make -n demo` shows none by default).
demo: build-base
	$(if $(filter redis,$(DEMO_CACHE)),$(PY) -m pip install -q "redis>=4")
	$(if $(filter postgresql,$(DEMO_DB)),$(PY) -m pip install -q "psycopg[binary]>=3.1")
	cd examples/demo && exec ../../$(PY) manage.py demo

bench: build
	$(PY) -m benchmarks

# The same cases under asv (asv run --python=same), the machine described first if asv has not
# seen it (a fresh clone or machine); e.g. make bench-asv ASV_ARGS="--quick --bench LocMemGet".
ASV_ARGS ?=
bench-asv: build
	ASV_PYTHON=$(PY) scripts/bench_asv.sh $(ASV_ARGS)

# Sphinx + MyST, strict: -W turns every warning (a broken cross-reference, a page left out of the
# toctree, a docstring autodoc cannot read) into a failure; -n checks every reference; --keep-going
# lists them all; -E re-reads every page (else an unchanged page is not read, its warnings unseen).
# No linkcheck: there is no network. Seconds, not minutes.
docs: build
	$(PY) -m sphinx -E -W --keep-going -n -q -b html docs build/docs
	@echo "docs: build/docs/index.html"

lint: venv
	$(PY) -m ruff check src _core tests benchmarks
	$(PY) -m ruff format --check src _core tests benchmarks

clean:
	rm -rf build dist *.egg-info src/*.egg-info _core/*.c _core/*.html
