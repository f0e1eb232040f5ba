# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install run demo test lint bench

$(BIN)/writeback: pyproject.toml simulators/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e ./simulators
	touch $@

install: $(BIN)/writeback

## Start API, worker and a ConnectWise simulator on embedded defaults (SQLite, filesystem broker).
run: install
	$(BIN)/writeback dev

## Drive one resolve and one escalate against `make run`.
demo: install
	$(BIN)/writeback demo

## Lint, type-check, check layering, then the whole suite (unit, integration, e2e).
lint: install
	$(BIN)/ruff check src simulators tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	scripts/ensure-services.sh
	$(BIN)/pytest

## Benchmarks: each figure beside a baseline measured in the same run (needs wrk).
bench: install
	scripts/ensure-services.sh
	$(BIN)/python -m bench
