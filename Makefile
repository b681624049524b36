# tinylm: `make demo` and `make test` work on a fresh clone; each creates .venv first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
SERVERS := $(WORKSPACE)/servers
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-fast bench servers stop clean

setup: $(STAMP)

# On a machine without CUDA, the CPU build of torch goes in first: a plain `torch`
# requirement would otherwise pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install --quiet torch==2.13.0; fi
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/tinylm pipeline --config configs/demo.yaml --workspace $(WORKSPACE) --summary

# Style is checked, not policed: ruff's lint rules and formatting, as configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Benchmarks print ratios against the reference tools (wikiextractor, ...) on the same data.
bench: setup
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# Prefect and MLflow servers on 127.0.0.1 in the background, each in its own process
# group (so `make stop` ends their workers too); pids and logs in $(SERVERS).
servers: setup
	mkdir -p $(SERVERS)
	if [ -f $(SERVERS)/prefect.pid ] && kill -0 $$(cat $(SERVERS)/prefect.pid) 2>/dev/null; then \
	  echo "prefect server already running"; else \
	  setsid nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) >$(SERVERS)/prefect.log 2>&1 & echo $$! >$(SERVERS)/prefect.pid; fi
	if [ -f $(SERVERS)/mlflow.pid ] && kill -0 $$(cat $(SERVERS)/mlflow.pid) 2>/dev/null; then \
	  echo "mlflow server already running"; else \
	  setsid nohup $(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
	    --backend-store-uri sqlite:///$(abspath $(WORKSPACE))/mlflow.db \
	    --default-artifact-root $(abspath $(WORKSPACE))/mlartifacts >$(SERVERS)/mlflow.log 2>&1 & echo $$! >$(SERVERS)/mlflow.pid; fi
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)   MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "To run flows against them:"
	@echo "  export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT)"

stop:
	for name in prefect mlflow; do \
	  if [ -f $(SERVERS)/$$name.pid ]; then kill -- -$$(cat $(SERVERS)/$$name.pid) 2>/dev/null || true; rm -f $(SERVERS)/$$name.pid; fi; \
	done

clean: stop
	rm -rf $(WORKSPACE)
