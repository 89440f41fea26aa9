# Two commands: `make run` (the whole service) and `make test` (the suite).
# Works on a machine with only Python 3.11+ and make: both create .venv and
# install the pinned requirements, again only when a requirements file changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test bench clean

run: $(VENV)/.run-deps
	$(BIN)/python -m deltacrown.devserver

test: $(VENV)/.test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks: not part of `make test`; writes BENCHMARKS.md. BENCH_ARGS=--quick for
# small sizes; PostgreSQL too when BENCH_DATABASE_URL is set.
bench: $(VENV)/.test-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the requirements changed.
$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

clean:
	rm -rf $(VENV) .pytest_cache test-output
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
