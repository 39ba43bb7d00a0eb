# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST  := $(BIN)/python -m pytest

.PHONY: setup demo test test-quick lint test-slow test-all check-install experiment bench bench-peers-setup deploy clean

# torch is installed first and pinned: 2.13.0 is the CPU wheel on disk here; an unpinned
# torch (or a package asking for one) would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

## The default experiment end to end: emoji suggestions, non-private and DP-SGD at ε = 8.
demo: $(STAMP)
	$(BIN)/python -m sandbox -m privacy=none,dpsgd hydra.sweep.dir=outputs/demo
	@$(BIN)/python -m sandbox.summary outputs/demo

## The test suite (fast: minutes). pytest exits non-zero when no test ran.
test: lint $(STAMP)
	$(PYTEST) --durations=25

## The layer contracts (import-linter, pyproject.toml) and ruff (lint + format).
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## The quick tier: without the end-to-end tests (Flower, deployment, shadows, subprocess CLIs).
test-quick: $(STAMP)
	$(PYTEST) -m 'not slow and not e2e'

## Slow suites (full-size corpus, long training runs).
test-slow: $(STAMP)
	$(PYTEST) -m slow

test-all: $(STAMP)
	$(PYTEST) -m 'slow or not slow'

## A non-editable install in a fresh venv runs from another directory (the config ships in the package).
check-install:
	PY=$(PY) scripts/check-install

## A named experiment (sandbox/conf/experiment/NAME.yaml) with its audits and claims: make experiment NAME=slack-emoji
experiment: $(STAMP)
	PYTHON=$(BIN)/python bash experiments/$(NAME)/run.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.federated
	$(BIN)/python -m benchmarks.startup
	$(BIN)/python -m benchmarks.peers
	$(BIN)/python -m benchmarks.population
	$(BIN)/python -m benchmarks.shadows

## pfl-research for the matched-workload comparison (benchmarks.peers) in its own venv: pfl 0.6
## pins dp-accounting < 0.6, this project needs 0.6. torch 2.13.0 first, then pfl with torch held
## by the constraints file (an unpinned torch would pull a CUDA build). Without it, `make bench`
## skips pfl with a note.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
$(BENCH_STAMP): benchmarks/bench-constraints.txt
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -c benchmarks/bench-constraints.txt 'pfl[pytorch]'
	@touch $(BENCH_STAMP)

bench-peers-setup: $(BENCH_STAMP)

## Federated DP training on Flower's Deployment Engine: a local SuperLink and one SuperNode per
## client (here 3 workspaces = 3 clients), `flwr run .`; prints where record.json and model.pt are.
DEPLOY_CONFIG := mode=federated federation=cross_silo data.n_workspaces=3 data.n_users=60 \
	data.workspace_opt_out_rate=0 federation.rounds=2 federation.sample_rate=1.0 \
	privacy=dpfedavg privacy.noise_multiplier=1.0 privacy.target_epsilon=null
deploy: $(STAMP)
	PYTHON=$(BIN)/python scripts/flower-deploy $(DEPLOY_CONFIG)

clean:
	rm -rf $(VENV) $(BENCH_VENV) outputs multirun .pytest_cache
