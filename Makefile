# MovieLens lakehouse — task runner. `make help` lists the targets.
# The quick start is two commands: `make run` and `make test`; both install what is missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Superset has its own virtualenv: its pandas pins conflict with pyspark's.
SUPERSET_VENV := .venv-superset
LAKEHOUSE_HOME ?= $(CURDIR)/.lakehouse
LAKEHOUSE_MLFLOW_DIR ?= $(CURDIR)/mlflow
DATASET ?= ml-100k
# A local MovieLens copy (folder or zip). Default: the copy in ../shared/data/movielens/ when
# there is one (these machines cannot reach GroupLens), else empty = download the official zip.
MOVIELENS_SOURCE ?= $(wildcard $(abspath $(CURDIR)/../shared/data/movielens/$(DATASET)))
PYTEST_ARGS ?=
# uv installs the same pinned lock files as pip would, in parallel and from its cache: a fresh
# install of both virtualenvs takes about a minute instead of ten.
UV_VERSION := 0.13.9
UV_PIP := $(BIN)/uv pip --quiet

export LAKEHOUSE_HOME LAKEHOUSE_MLFLOW_DIR MOVIELENS_SOURCE

.PHONY: help setup check-java run up down status ingest dbt-build train similarity housekeeping mlflow api docs test test-jars test-fast bench bench-grids bench-ml bench-stream bench-readers bench-soak bench-api lock clean \
	superset-setup superset superset-import superset-check superset-lock check-chromium

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo "  Variables: DATASET=$(DATASET)  MOVIELENS_SOURCE=<folder or zip>  LAKEHOUSE_HOME=$(LAKEHOUSE_HOME)"

check-java: ## check that Java >= 17 is installed
	@command -v java >/dev/null || { echo "Java 17 or newer is required (Spark runs on the JVM). Install it, e.g. 'sudo apt-get install openjdk-17-jre-headless', then re-run."; exit 1; }
	@major=$$(java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'); \
	if [ -z "$$major" ] || [ "$$major" -lt 17 ]; then \
	  echo "Java $$major found; Spark 4 needs Java 17 or newer. Install e.g. 'sudo apt-get install openjdk-17-jre-headless' and put it first on PATH (or set JAVA_HOME)."; exit 1; fi

# The virtualenv is rebuilt only when the pins change: a second run costs nothing.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Python 3.11 or 3.12 is required"; exit 1; }
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if (3, 11) <= v[:2] <= (3, 12) else "Python 3.11 or 3.12 is required, found %d.%d" % v[:2])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV_PIP) install --python $(BIN)/python -r requirements.lock
	$(UV_PIP) install --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $@

setup: check-java $(VENV)/.installed ## create .venv and install the pinned dependencies (idempotent)

run: superset-setup ## the whole pipeline: server, ingest, dbt build, train + register, similarity, MLflow UI, stream, Superset
	$(BIN)/lakehouse run --dataset $(DATASET)

up: setup ## start the lakehouse server (Thrift 127.0.0.1:10000, Spark Connect 127.0.0.1:15002); fetches Delta's jars once
	$(BIN)/lakehouse up

down: ## stop the lakehouse server and everything it started
	@if [ -x $(BIN)/lakehouse ]; then $(BIN)/lakehouse down; else echo "nothing to stop"; fi

status: setup ## ports, master, and every table with its rows, Delta version and last commit
	$(BIN)/lakehouse status

ingest: setup ## load DATASET (from MOVIELENS_SOURCE or the official zip) into bronze
	$(BIN)/lakehouse ingest --dataset $(DATASET)

dbt-build: setup ## dbt build (seeds, models, tests) against the running server
	cd $(CURDIR) && $(BIN)/dbt build

train: setup ## sweep, evaluate and register the recommenders (MLflow); write the ml tables
	$(BIN)/lakehouse train

similarity: setup ## user-similarity graph, heatmap matrix and communities into the ml schema
	$(BIN)/lakehouse similarity --vectors factors --k 10

housekeeping: setup ## OPTIMIZE the stream's tables, expire what is past its retention, VACUUM every table
	$(BIN)/lakehouse housekeeping

api: setup ## serve the REST API on 127.0.0.1:8000 (stopped by `make down`)
	$(BIN)/lakehouse api up

mlflow: setup ## serve the MLflow UI on 127.0.0.1:5000 (stopped by `make down`)
	$(BIN)/lakehouse mlflow up

docs: setup ## dbt docs generate, then serve the data catalog on 127.0.0.1:8085 (stopped by `make down`)
	$(BIN)/lakehouse docs up

# Superset's venv is rebuilt only when its lock or the plugin's metadata change.
$(SUPERSET_VENV)/.installed: superset/requirements.lock superset/plugin/pyproject.toml | $(VENV)/.installed
	$(BIN)/lakehouse superset install
	@touch $@

superset-setup: setup $(SUPERSET_VENV)/.installed ## install Superset into .venv-superset (pinned; idempotent)

superset: superset-setup ## Superset on 127.0.0.1:8088 with the dashboards imported (stopped by `make down`)
	$(BIN)/lakehouse superset up

superset-import: superset-setup ## re-import the dashboards from superset/dashboards.yml (idempotent)
	$(BIN)/lakehouse superset import

superset-check: superset-setup check-chromium ## open every dashboard in headless Chromium; screenshots in test-artifacts/superset
	$(BIN)/lakehouse superset check

# Headless Chromium for the dashboard tests: Debian's package (Playwright's browser download
# cannot be had here). Installed with apt when missing and we may; otherwise the test says why it skips.
check-chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing and cannot be installed here: the browser test will skip (sudo apt-get install chromium)"; fi; }

superset-lock: ## re-resolve superset/requirements.lock from superset/requirements.in
	rm -rf /tmp/superset-lock && $(PYTHON) -m venv /tmp/superset-lock
	/tmp/superset-lock/bin/pip install --quiet --disable-pip-version-check -r superset/requirements.in
	{ echo "# The whole tree of superset/requirements.in, resolved on Python 3.11 (make superset-lock)."; \
	  /tmp/superset-lock/bin/pip freeze --all --exclude pip; } > superset/requirements.lock

# The tests share one verified copy of Delta's jars under .cache/ (the unit tests check it too).
test-jars: setup
	LAKEHOUSE_JAR_CACHE=$(CURDIR)/.cache/jars $(BIN)/lakehouse jars

test: setup superset-setup check-chromium test-jars ## run the test suite (starts its own server on free ports; never touches yours)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: parsers, rules, settings, the API on small Delta tables written without Spark,
# the data catalog. No server starts; `make test` runs these and everything that needs Spark.
test-fast: setup ## the inner loop: every test that needs no Spark server (parsers, API, catalog, ...)
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

bench: superset-setup ## profile `make run` on ml-100k: each stage's time, Spark jobs and statements, beside its floor
	$(BIN)/python bench/pipeline.py $(BENCH_ARGS)

bench-grids: setup ## the default training grid beside the full sweep on ml-100k: time, champion RMSE and NDCG@10
	$(BIN)/python bench/grids.py

# scikit-surprise is a benchmark-only dependency: it compiles C extensions (needs gcc and the
# Python headers), so it stays out of the product's lock.
bench-ml: setup ## recommender quality on ml-100k's folds vs scikit-surprise and the seeds' method
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/ml_quality.py

bench-stream: setup ## streaming latency (landing -> bronze over Thrift, -> recommendations) and sustained ingest
	$(BIN)/python bench/streaming.py

bench-readers: setup ## Thrift readers' failed and empty reads while the stream, dbt build and train all write
	$(BIN)/python bench/readers.py

bench-soak: setup ## 30 min of replay at 500 ratings/s, the stream killed every 5 min and the server once: nothing lost, nothing twice
	$(BIN)/python bench/soak.py

bench-api: setup ## the REST API under open-loop load (latency at 500/s, max rate at p99 <= 50 ms, search, POST -> new list, memory); BENCH_API_ARGS=--scale-25m adds 25M ratings
	$(BIN)/python -m bench.api $(BENCH_API_ARGS)

lock: ## re-resolve requirements.lock from pyproject.toml's pins
	rm -rf /tmp/lakehouse-lock && $(PYTHON) -m venv /tmp/lakehouse-lock
	/tmp/lakehouse-lock/bin/pip install --quiet --disable-pip-version-check ".[test]"
	/tmp/lakehouse-lock/bin/pip install --quiet setuptools==80.9.0
	/tmp/lakehouse-lock/bin/pip freeze --all --exclude movielens-lakehouse --exclude pip | sed '/^-e /d' > requirements.lock

clean: ## stop the server and delete the data directory (asks first)
	@read -r -p "Delete $(LAKEHOUSE_HOME) and $(LAKEHOUSE_MLFLOW_DIR) (all tables, metastore, logs, MLflow runs)? [y/N] " answer; \
	if [ "$$answer" = y ] || [ "$$answer" = Y ]; then \
	  $(MAKE) --no-print-directory down; rm -rf "$(LAKEHOUSE_HOME)" "$(LAKEHOUSE_MLFLOW_DIR)" target logs; echo "removed $(LAKEHOUSE_HOME) and $(LAKEHOUSE_MLFLOW_DIR)"; \
	else echo "kept $(LAKEHOUSE_HOME)"; fi
