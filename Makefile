# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# uv resolves the lock files (`make lock`); installing from them needs only pip.
UV_VERSION := 0.13.8
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet
# The integration and e2e suites run once per broker.
export WRITEBACK_TEST_BROKERS ?= redis,amqp
# pytest-xdist workers: the suite mostly waits on processes it started, so more than the cores;
# each worker runs at most one stack on the machine's PostgreSQL at a time (max_connections 100).
TEST_WORKERS ?= 3

.PHONY: install run demo test lint bench lock

# Exactly the locked versions, each checked against its hash; then our own packages, no deps.
$(BIN)/writeback: pyproject.toml simulators/pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e . -e ./simulators
	touch $@

install: $(BIN)/writeback

## Re-resolve the lock files after editing dependencies in pyproject.toml; versions already
## locked are kept. `make lock UPGRADE=--upgrade` moves everything to the newest allowed.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(UPGRADE) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) $(UPGRADE) \
		-o requirements-dev.lock

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
	$(BIN)/pytest -n $(TEST_WORKERS)

## Benchmarks: each figure beside a baseline measured in the same run (needs wrk).
bench: install
	scripts/ensure-services.sh
	$(BIN)/python -m bench
