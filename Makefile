# Two entry points a new user needs: `make demo` and `make test`.
# Each sets itself up in .venv: demo installs just the package, test adds the test tools.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test
# make demo PORT=10118 when 10117 is taken.
PORT ?= 10117

.PHONY: demo test lint tools bench clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

$(TESTING): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[test]'
	touch $@ $(RUNTIME)

demo: $(RUNTIME)
	$(VENV)/bin/mixpeek-exporter --demo --web.listen-address :$(PORT)

tools:
	bash scripts/install-test-tools.sh

lint: $(TESTING)
	$(VENV)/bin/ruff check .
	bash scripts/sync-chart-files.sh --check

test: $(TESTING) tools lint
	$(PY) -m pytest

bench: $(RUNTIME)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
