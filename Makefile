# Two commands on a fresh clone (Python 3.11+):  make dev   |   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

dev: $(STAMP)  ## the hotline, web + worker + phone simulator, on embedded defaults
	$(BIN)/hotline dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint  ## lint, type-check, then the whole test suite (SQLite and PostgreSQL tiers)
	bash scripts/ensure-browser
	$(BIN)/pytest

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.bench-installed  ## check-in dispatch, then webhooks (WEBHOOKS_ARGS=--quick: ~4 min)
	$(BIN)/python -m bench checkins
	$(BIN)/python -m bench webhooks $(WEBHOOKS_ARGS)

soak: $(STAMP)  ## 5 minutes of webhooks with a Redis restart and a worker kill (not in `make test`)
	$(BIN)/python -m bench soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
