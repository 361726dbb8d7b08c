# The two commands of the README: `make demo` and `make test`. Everything else is a step of them.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: install stack-up stack-down up down demo test test-kills lint typecheck bench

install:
	@bash scripts/install.sh

stack-up: install
	@bash scripts/stack/up.sh

stack-down:
	@bash scripts/stack/down.sh

up: stack-up
	@bash scripts/services.sh up

down:
	@bash scripts/services.sh down
	@bash scripts/stack/down.sh

# The demo's poller reads the sample orders view every 2 s (samples/poller/orders.sql).
demo: stack-up
	@$(PY) scripts/demo.py prepare
	@POLLER_QUERY="$${POLLER_QUERY:-SELECT * FROM bridge_demo_orders_ready}" \
	  POLLER_INTERVAL_SECONDS="$${POLLER_INTERVAL_SECONDS:-2}" bash scripts/services.sh up
	@$(PY) scripts/demo.py

lint: install
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

typecheck: install
	@.venv/bin/mypy

# Services started by `make up` would compete with the tests' own for the same topics.
test: stack-up
	@bash scripts/services.sh down >/dev/null
	@$(MAKE) --no-print-directory lint typecheck
	@.venv/bin/pytest -q -p no:cacheprovider

# The SIGKILL failover test repeated (issue 7); `make test` runs it KILL_RUNS=3 times.
test-kills: stack-up
	@bash scripts/services.sh down >/dev/null
	@KILL_RUNS="$${KILL_RUNS:-10}" .venv/bin/pytest -q -s -p no:cacheprovider tests/e2e/test_failover.py
