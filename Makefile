# Every target creates the virtualenv on first use, so `make run` and `make test`
# are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format emulator clean perf

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/llm-gateway serve --host $(HOST) --port $(PORT)

emulator: $(STAMP)
	$(BIN)/llm-gateway emulator --host $(HOST) --port 9010

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The performance harness (benchmarks/perf/README.md): `make perf`, `make perf PEER=litellm`,
# extra flags through PERF_ARGS (e.g. PERF_ARGS=--profile or PERF_ARGS=--quick).
perf: $(STAMP)
	$(BIN)/python benchmarks/perf/run.py $(if $(PEER),--peer $(PEER)) $(PERF_ARGS)
