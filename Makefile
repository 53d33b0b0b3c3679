# The README's two commands: `make run` (play) and `make test` (every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run spawn test test-fast lint format bench bench-quick soak serve lock clean

run: $(STAMP)
	$(BIN)/python -m tools.dev

# Spawn viruses into the game `make run` is serving: make spawn ARGS="--count 5"
spawn: $(STAMP)
	$(BIN)/python -m tools.dev spawn $(ARGS)

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The unit tier alone (in-process: no daphne, nginx or browser), in well under a minute.
test-fast: lint
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Production mode on this machine: migrate, collect static files, run one daphne process per
# core on one loopback port (virusgame/serve.py; SERVE_PROCESSES=N for another count).
# Settings come from the environment (DEBUG is off unless DJANGO_DEBUG says otherwise), or
# from ENV_FILE, a file of KEY=value lines such as deploy/env.example:
#   make serve ENV_FILE=/etc/virusgame/env
# Behind a proxy on this machine add DAPHNE_ARGS=--proxy-headers (docs/production.md).
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000
SERVE_PROCESSES ?= 0
DAPHNE_ARGS ?=
serve: $(STAMP)
	@set -a; if [ -n "$(ENV_FILE)" ]; then . "$(abspath $(ENV_FILE))"; fi; set +a; \
	set -x; \
	$(BIN)/python manage.py migrate --no-input && \
	$(BIN)/python manage.py collectstatic --no-input -v0 && \
	exec $(BIN)/python -m virusgame.serve --processes $(SERVE_PROCESSES) -b $(SERVE_HOST) -p $(SERVE_PORT) \
		--no-server-name \
		--ping-interval 20 --ping-timeout 30 --application-close-timeout 10 $(DAPHNE_ARGS) \
		virusgame.asgi:application

# Every package, indirect ones included, comes from the hash-checked lock (docs/production.md,
# "Dependencies"); requirements*.txt name what the project asks for.
$(STAMP): requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

# Refresh the locks after editing requirements.txt or requirements-dev.txt (or to take upgrades:
# make lock LOCK_ARGS=--upgrade). The runtime lock is what the container image installs.
PIP_TOOLS := pip-tools==7.7.0
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(BIN)/pip install --quiet $(PIP_TOOLS)
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) -o requirements.lock requirements.txt
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) -c requirements.lock -o requirements-dev.lock requirements-dev.txt

# The benchmark against its baselines (docs/performance.md); not part of `make test`.
# More options: make bench BENCH_ARGS="--processes 0" (a node: one daphne per core).
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# The soak (bench/soak.py): one node, 500 players with churn, cron, a Redis restart, for
# 20 minutes; fails if RSS, fds, tasks, rows or Redis memory keep growing. Not part of
# `make test`. Shorter: make soak SOAK_ARGS="--minutes 3".
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .run staticfiles .pytest_cache .ruff_cache test-artifacts
