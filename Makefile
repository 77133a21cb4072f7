# The two commands a new user needs: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.synced-stamp

.PHONY: help setup system-deps run test lint typecheck unit bench chaos clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## Install ffmpeg, redis-server and, for the tests, iproute2 and chromium (with its driver) from Debian when missing
	@scripts/install-system-deps.sh

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set, every worker would
# otherwise compile whisperx's import tree from source at start (38 s against 14 s here).
$(STAMP): pyproject.toml uv.lock Makefile
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	uv sync --frozen --all-extras --group dev --compile-bytecode
	@touch $(STAMP)

setup: system-deps $(STAMP) ## Create .venv with the API, both engines and the dev tools

run: setup ## Start redis-server, one worker and the API on :8000 (Ctrl-C stops them all)
	@scripts/run.sh

lint: setup ## ruff (lint and format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy --strict
	$(VENV)/bin/mypy .

unit: setup ## Unit tests only (fakeredis, fake engine)
	$(VENV)/bin/pytest tests/unit

test: setup lint typecheck ## Lint, type-check and run every test
	$(VENV)/bin/pytest

bench: setup ## Measure the service against direct engine calls; writes BENCHMARKS.md
	$(VENV)/bin/python -m bench

chaos: setup ## 300 jobs while workers, Redis and the API are killed, then again with a Redis failover (Sentinel); a summary line each
	$(VENV)/bin/python -m tests.chaos
	$(VENV)/bin/python -m tests.chaos --redis sentinel

clean: ## Remove the environment and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
