# The single entry point. Every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Each stamp says what is installed in .venv: the demo's few packages, or the whole developer
# toolchain (a superset of them: tests, type checker, linters, fuzzer, browser driver).
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint format bench bench-setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

# What the demo runs: conveyor, its web app (the dashboard) and uvloop.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[web,fast]'
	touch $(DEMO_STAMP)

## demo: a worker on the embedded SQLite broker, jobs succeeding, retrying and failing
demo: $(DEMO_STAMP)
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
