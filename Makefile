# The two commands: `make run` (serve on $HOST:$PORT) and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run restart build test test-unit test-integration test-e2e services format lint \
        clean lock migrate docker-build docker-deploy docker-stop obs-up obs-down obs-status \
        run-with-obs obs-all bench bench-api bench-cache bench-webhooks bench-obs worker services-down

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "make: Python 3.11 or newer is needed; set PYTHON=python3.x" >&2; exit 1; }
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); } || \
	  { rm -rf $(VENV); echo "make: cannot create a virtualenv; on Debian: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --editable .
	@touch $@

install: $(BIN)/.installed ## Create .venv, install the locked dependencies and the project (editable)

lock: ## Re-resolve requirements*.lock from pyproject.toml (needs uv: pip install uv)
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements.lock
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements-dev.lock

.PHONY: rename
rename: ## Rename the service everywhere: make rename NAME=billing-service (scripts/rename.py)
	@test -n "$(NAME)" || { echo "usage: make rename NAME=<new-service-name>  (lowercase kebab case, e.g. billing-service)" >&2; exit 2; }
	$(PYTHON) scripts/rename.py -- "$(NAME)"

migrate: install ## Apply database migrations (DATABASE_URL, default ./var/app.db)
	$(BIN)/python -m app.migrate

run: migrate ## Migrate, then serve the API on $HOST:$PORT (SQLite unless DATABASE_URL is set)
	$(BIN)/uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT)

restart: ## Stop the server on $PORT and run it again
	-@pkill -f "uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT)" && sleep 1
	$(MAKE) run

build: install ## Build the wheel into dist/
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

services: ## Start PostgreSQL, Redis, Kafka and Jaeger natively, install Prometheus (Debian's packages when root; Jaeger built with Go)
	@scripts/services.sh up || echo "make: services not started; tests needing them are skipped (REQUIRE_SERVICES=1 fails them)"

services-down: ## Stop the Kafka broker, Jaeger and Redis that `make services` started (PostgreSQL keeps running)
	@scripts/services.sh down

.PHONY: kafka-logs
kafka-logs: ## Follow the local Kafka broker's log (kafka/broker.sh up|down|restart|status|logs)
	kafka/broker.sh logs -f

test: install services ## Run every test (unit, integration on SQLite + PostgreSQL, e2e, docs); gate: branch coverage of app/ >= 90 %
	@$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	@$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test-unit: install ## Run the unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install services ## Run the integration tests (real databases)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install services ## Run the black-box HTTP tests (against BASE_URL when set)
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

worker: migrate ## Run the outbox relay and the consumers (python -m app.worker) until Ctrl-C
	$(BIN)/python -m app.worker

bench: install services ## Measure the outbox relay: events/s vs a raw producer, commit-to-ack latency
	$(BIN)/python -m bench.relay_throughput

bench-api: install services ## Measure the API with wrk: req/s, p50/p99, CPU per request vs bare FastAPI + asyncpg
	$(BIN)/python -m bench.api_throughput

bench-cache: install services ## Measure what the Redis read cache buys a GET: cached vs uncached, CPU per request
	$(BIN)/python -m bench.cache_throughput

bench-webhooks: install ## Measure webhook deliveries/s to a local receiver vs a bare httpx loop, CPU per delivery
	$(BIN)/python -m bench.webhook_throughput

bench-obs: install services ## Measure what observability costs a read: fully on (100 % sampled, exported) vs off
	@scripts/jaeger.sh up >/dev/null || { echo "make: bench-obs exports to Jaeger (scripts/jaeger.sh up) and it did not start" >&2; exit 1; }
	$(BIN)/python -m bench.observability_cost

format: install ## Format and auto-fix the code
	$(BIN)/ruff format app migrations tests bench scripts
	$(BIN)/ruff check --fix app migrations tests bench scripts

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check app migrations tests bench scripts
	$(BIN)/ruff format --check app migrations tests bench scripts
	$(BIN)/mypy app migrations bench scripts

clean: ## Remove caches, build output and the local SQLite database (not var/kafka)
	rm -rf var/app.db* var/.coverage* build dist .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Targets whose capability has not landed yet say so and fail.
NOT_YET_DOCKER = the Dockerfile and docker-compose stack have not landed yet
NOT_YET_OBS = the compose stack that runs Grafana, Tempo, Loki and Prometheus (configured in grafana/ prometheus/ tempo/ loki/) has not landed yet; the service's own telemetry has: docs/OBSERVABILITY.md
not-yet = @echo "make $@: not available: $(1)" >&2; exit 1

docker-build: ## (not yet) Build the Docker image
	$(call not-yet,$(NOT_YET_DOCKER))
docker-deploy: ## (not yet) Run the service with docker compose
	$(call not-yet,$(NOT_YET_DOCKER))
docker-stop: ## (not yet) Stop the compose deployment
	$(call not-yet,$(NOT_YET_DOCKER))
obs-up: ## (not yet) Start Grafana, Tempo, Loki, Prometheus
	$(call not-yet,$(NOT_YET_OBS))
obs-down: ## (not yet) Stop the observability stack
	$(call not-yet,$(NOT_YET_OBS))
obs-status: ## (not yet) Show the observability stack's state
	$(call not-yet,$(NOT_YET_OBS))
run-with-obs: ## (not yet) Run the service exporting to the stack
	$(call not-yet,$(NOT_YET_OBS))
obs-all: ## (not yet) Start everything: stack, service, worker
	$(call not-yet,$(NOT_YET_OBS))
