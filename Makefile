# Two entry points a new user needs: `make demo` and `make test`.
# Each sets itself up (a venv in .venv with the package and its test tools).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint tools bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mixpeek-exporter --demo

tools:
	bash scripts/install-test-tools.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check exporter tests bench

test: $(STAMP) tools lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
