# The single entry point. Every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint format bench bench-setup clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a worker on the embedded SQLite broker, jobs succeeding, retrying and failing
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## test: lint, type-check and the whole test suite
test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench-setup: Conveyor's Redis and PostgreSQL extras in .venv; the peer task queues, pinned
## in benchmarks/requirements-peers*.txt, in the benchmark's own venvs under .bench/
bench-setup: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --setup-only

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[redis,postgres]'
	touch $(BENCH_STAMP)

## bench: Conveyor against Celery, RQ, Dramatiq, arq, taskiq, SAQ, streaQ, Huey, PgQueuer and
## Procrastinate, in one run (a table of ratios; .bench/results.json). Options: ARGS="--quick"
bench: bench-setup
	$(BIN)/python benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .bench .mypy_cache .pytest_cache .ruff_cache build dist
