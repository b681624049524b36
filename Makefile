# tinylm: `make demo` and `make test` work on a fresh clone; each creates .venv first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
WORKSPACE ?= workspace
SERVERS := $(WORKSPACE)/servers
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
PYTEST_ARGS ?=
# Two test processes (pytest-xdist): most slow tests wait on servers and subprocesses, so two share two cores well.
PYTEST_WORKERS ?= 2

.PHONY: setup demo lint docs test test-fast bench servers stop clean

setup: $(STAMP)

# On a machine without CUDA the environment must end with torch's CPU build: a plain
# `torch` requirement pulls several GB of CUDA packages. Every install here runs under a
# constraint pinning torch==2.13.0, so no later install can swap the build, and takes the
# CPU wheel from PyTorch's CPU index when that index is reachable (pip prefers 2.13.0+cpu
# to 2.13.0 wherever both are offered). scripts/check_torch.py fails the install loudly otherwise.
TORCH_CPU := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
CONSTRAINTS := $(VENV)/torch-constraints.txt
PIP_INSTALL = $(BIN)/python -m pip install --quiet --no-compile $(if $(HAS_CUDA),,-c $(CONSTRAINTS) $(shell curl -s --max-time 5 -o /dev/null -w '%{http_code}' $(TORCH_CPU_INDEX)/torch/ | grep -q 200 && echo --extra-index-url $(TORCH_CPU_INDEX)))

$(BIN)/python:
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	echo "torch==$(TORCH_CPU)" > $(CONSTRAINTS)

# What the demo and the flows need: the runtime dependencies only.
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) $(if $(HAS_CUDA),,torch==$(TORCH_CPU)) -e .
	$(BIN)/python scripts/check_torch.py $(if $(HAS_CUDA),,--cpu)
	touch $@

# llama.cpp compiles for the CPU that builds it (-march=native), AMX kernels included where the CPU lists AMX; a
# virtual machine that lists AMX without enabling its tile state (Firecracker, where CI runs) then dies with
# SIGSEGV at the first quantized matmul. So the x86 build leaves AMX out, and skips pip's wheel cache, which keys a
# build by its source and would hand back a wheel built with AMX.
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml | head -1)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)')

# The build takes minutes (55 on a busy machine), so its wheel is kept in a cache of tinylm's own, keyed by the
# version, the flags, the machine and the Python it was built for, and built only when the key is new: pip's cache
# is not used, since it keys by source alone and would hand an AMX build back. Built into a scratch folder and moved
# into place whole, so a build killed half way leaves nothing that looks finished.
LLAMA_WHEELS ?= $(HOME)/.cache/tinylm/wheels
LLAMA_KEY := $(shell echo "$(LLAMA_CPP) $(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS) $(shell uname -m) $(shell python3 -c 'import sys; print(sys.implementation.cache_tag)')" | sha256sum | cut -c1-16)
LLAMA_WHEEL_DIR := $(LLAMA_WHEELS)/$(LLAMA_KEY)

# What the tests need besides: pytest (and pytest-xdist), ruff, the openai client, Playwright, Dask, Ray, moto,
# llama-cpp-python.
$(DEV_STAMP): pyproject.toml $(STAMP)
	if ! ls $(LLAMA_WHEEL_DIR)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  rm -rf $(LLAMA_WHEEL_DIR).building && \
	  CMAKE_ARGS="$$CMAKE_ARGS $(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEEL_DIR).building "$(LLAMA_CPP)" && mv $(LLAMA_WHEEL_DIR).building $(LLAMA_WHEEL_DIR); fi
	$(PIP_INSTALL) $(LLAMA_WHEEL_DIR)/llama_cpp_python-*.whl
	$(PIP_INSTALL) -e ".[dev]"
	$(BIN)/python scripts/check_torch.py $(if $(HAS_CUDA),,--cpu)
	touch $@

demo: setup
	$(BIN)/tinylm pipeline --config configs/demo.yaml --workspace $(WORKSPACE) --summary

# Style is checked, not policed: ruff's lint rules and formatting, as configured in pyproject.toml.
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The pages of docs/ that are generated from the code (tests/test_docs.py fails while one is stale).
docs: $(STAMP)
	$(BIN)/python scripts/config_reference.py
	$(BIN)/python scripts/prefect_yaml.py

test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Unit tests only: no end-to-end flows and no real services or subprocesses (conftest marks the tests that start one).
test-fast: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow and not service" $(PYTEST_ARGS)

# Benchmarks print ratios against the reference tools (wikiextractor, ...) on the same data;
# `make bench QUICK=1` runs each on less data with fewer repeats, to check they work in minutes.
bench: $(DEV_STAMP) .venv-datatrove/.installed
	$(PIP_INSTALL) -e ".[dev,bench]"
	for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script $(if $(QUICK),--quick) || exit 1; done

# datatrove, the reference of bench/datatrove.py, in an environment of its own: its fastText wheel installs a
# `fasttext` module over fasttext-predict's, which tinylm reads its language model with.
.venv-datatrove/.installed:
	python3 -m venv .venv-datatrove
	.venv-datatrove/bin/python -m pip install --quiet "datatrove[processing]==0.10.1" orjson spacy "ray==2.60.0"
	touch $@

# Prefect and MLflow servers on 127.0.0.1 in the background, each in its own process
# group (so `make stop` ends their workers too); pids and logs in $(SERVERS). MLflow's job
# execution (huey consumers for its GenAI scorers, which tinylm never schedules) is off: idle,
# the server's process tree took 3.7 GB and 65% of a core with it, 1.5 GB and 1% without.
servers: setup
	mkdir -p $(SERVERS)
	if [ -f $(SERVERS)/prefect.pid ] && kill -0 $$(cat $(SERVERS)/prefect.pid) 2>/dev/null; then \
	  echo "prefect server already running"; else \
	  PREFECT_SERVER_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true \
	  setsid nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) >$(SERVERS)/prefect.log 2>&1 & echo $$! >$(SERVERS)/prefect.pid; fi
	if [ -f $(SERVERS)/mlflow.pid ] && kill -0 $$(cat $(SERVERS)/mlflow.pid) 2>/dev/null; then \
	  echo "mlflow server already running"; else \
	  MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python scripts/mlflow_experiment.py $(WORKSPACE) $(MLFLOW_PORT) >$(SERVERS)/mlflow-runs-url || exit 1; \
	  MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid nohup $(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
	    --backend-store-uri sqlite:///$(abspath $(WORKSPACE))/mlflow.db \
	    --default-artifact-root $(abspath $(WORKSPACE))/mlartifacts >$(SERVERS)/mlflow.log 2>&1 & echo $$! >$(SERVERS)/mlflow.pid; fi
	printf '{"prefect_api_url": "http://127.0.0.1:%s/api", "mlflow_tracking_uri": "http://127.0.0.1:%s"}\n' $(PREFECT_PORT) $(MLFLOW_PORT) >$(SERVERS)/urls.json
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)   MLflow runs: $$(cat $(SERVERS)/mlflow-runs-url)"
	@echo "tinylm commands with --workspace $(WORKSPACE) use these servers while they answer (see $(SERVERS)/urls.json)."

stop:
	for name in prefect mlflow; do \
	  if [ -f $(SERVERS)/$$name.pid ]; then kill -- -$$(cat $(SERVERS)/$$name.pid) 2>/dev/null || true; rm -f $(SERVERS)/$$name.pid; fi; \
	done
	rm -f $(SERVERS)/urls.json

clean: stop
	rm -rf $(WORKSPACE)
