# The two commands of the README: `make run` (everything, on this machine) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Files of `make run`, `make test` and `make bench` stay in this checkout (an installed
# bgworkers defaults to ~/.local/share/bgworkers; see docs/configuration.md).
export BGW_DATA_DIR ?= $(CURDIR)/var

.PHONY: setup broker test-tools migrate run test test-cluster unit lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
		|| { echo "bgworkers needs Python 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
		else echo "Python's venv module is missing: sudo apt-get install python3-venv"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# .env: every command run in this checkout (`bgworkers health`, `bgworkers schedule`, a script
# of the application) reads it from the working directory, so they all see the data `make run`
# uses. Written once; a BGW_DATA_DIR line already there is kept.
setup: $(STAMP)  ## create .venv, install bgworkers with its pinned dependencies, write .env
	@grep -qs '^BGW_DATA_DIR=' .env || { echo "BGW_DATA_DIR=$(CURDIR)/var" >> .env; \
		echo "wrote BGW_DATA_DIR=$(CURDIR)/var to .env: every command run here uses make run's data"; }

broker:  ## make sure RabbitMQ answers at BGW_BROKER_URL (starts a local one if needed)
	bash deploy/ensure-rabbitmq.sh

test-tools:  ## Prometheus/promtool, chromium and docker-compose for the tests (Debian packages)
	bash deploy/ensure-prometheus.sh
	bash deploy/ensure-chromium.sh
	bash deploy/ensure-docker-compose.sh

migrate: setup  ## create or upgrade the database schema
	$(BIN)/bgworkers migrate

run: setup broker  ## migrate, then run workers and scheduler until Ctrl-C
	$(BIN)/bgworkers run

lint: setup  ## ruff (lint and format check) and mypy
	$(BIN)/ruff check bgworkers tests bench tools
	$(BIN)/ruff format --check bgworkers tests bench tools
	$(BIN)/mypy

test: setup broker test-tools lint  ## lint, then the whole test suite (integration tests included)
	$(BIN)/pytest -m "not cluster" --cov --cov-report=term

# Three RabbitMQ nodes and network namespaces of its own (root; about 3 minutes): the
# quorum-queue fail-over test of docs/scaling.md. .ci/run calls it after `make test`.
# Without hypothesis' plugin (no test here uses it): importing it at the end of this session
# hit CPython 3.11's "AST constructor recursion depth mismatch" SystemError twice.
test-cluster: setup broker  ## the RabbitMQ cluster test (quorum queues, node and host losses)
	@command -v ip >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; \
		else echo "make test-cluster needs the ip command: sudo apt-get install iproute2"; exit 1; fi; }
	$(BIN)/pytest -m cluster -p no:cacheprovider -p no:hypothesispytest -s tests/cluster

unit: setup  ## the tests that need no RabbitMQ, PostgreSQL or Prometheus (seconds, anywhere)
	CI= $(BIN)/pytest -m "not integration" -p no:cacheprovider

format: setup
	$(BIN)/ruff format bgworkers tests bench tools
	$(BIN)/ruff check --fix bgworkers tests bench tools

bench: setup broker  ## benchmarks: print timing and memory figures
	for script in bench/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
