# ticketbot: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: demo test lint typecheck pytest servers demo-clean clean help bench bench-intake bench-full

help:
	@echo "make demo        run the bot on bot.toml: sample mail, the console, replies as .eml files"
	@echo "make test        install what the tests need (Dovecot, Synapse, PostgreSQL) and run them all"
	@echo "make lint        ruff check and format check"
	@echo "make typecheck   mypy (strict on bot/ and storage/)"
	@echo "make demo-clean  remove the demo's database, Maildir and outgoing mail (var/)"
	@echo "make bench       the quick benchmarks (intake, latency, flood, search growth; <10 min), figures to bench/results/"
	@echo "make bench-intake  intake throughput only (2000 mails, 3 runs; the former make bench)"
	@echo "make bench-full  the full runs: latency 200 mails, flood 5,000, growth 1k-100k with intake"

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing Debian's python3-venv"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv && \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(PIP) install -q -e ".[test]"
	@touch $@

demo: $(VENV)/.runtime
	$(BIN)/ticketbot demo --config bot.toml

demo-clean:
	rm -rf var/

servers:
	bash scripts/install-test-servers.sh

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test
	$(BIN)/mypy

pytest: $(VENV)/.test servers
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(VENV)/.test
	bash scripts/install-test-servers.sh
	$(BIN)/python -m bench.intake --count 1000 --runs 2
	$(BIN)/python -m bench.latency --quick
	$(BIN)/python -m bench.flood --quick
	$(BIN)/python -m bench.growth --sizes 1000,10000 --backend sqlite --passes 3

bench-intake: $(VENV)/.test
	bash scripts/install-test-servers.sh
	$(BIN)/python -m bench.intake

bench-full: $(VENV)/.test
	bash scripts/install-test-servers.sh
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.flood
	$(BIN)/python -m bench.growth --backend sqlite --intake --intake-runs 2

clean:
	rm -rf $(VENV) .venv-synapse .pytest_cache .mypy_cache .ruff_cache
