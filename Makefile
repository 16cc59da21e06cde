# Two entry points that work on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint tools unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python >= 3.11 is required (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: a demo chatbot workspace and its MongoDB (nx-27017 on 127.0.0.1:27117), their
## repository and a first full backup (once), then protect them: continuous capture, the
## scheduled backups and the HTTP API on 127.0.0.1:3000 (Ctrl-C stops)
run: $(STAMP)
	@$(BIN)/python scripts/demo-mongodb
	@test -f hindsight.toml || { $(BIN)/hindsight demo --dir ./demo-app --repo ./backups \
	  --mongodb "mongodb://127.0.0.1:27117/?directConnection=true" && \
	  $(BIN)/hindsight backup create; }
	$(BIN)/hindsight status
	$(BIN)/hindsight run

## test: lint, type-check, architecture contracts, then the whole suite
test: lint tools unit

## tools: command-line tools the tests run that PyPI does not have (promtool checks /metrics)
tools:
	@command -v promtool >/dev/null || scripts/install-promtool

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/journal_append.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
