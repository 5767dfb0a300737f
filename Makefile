# Everyday commands. `make train` and `make test` create .venv and install the project on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format clean cluster bench-gpu

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fid]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

train: $(STAMP) ## the offline quickstart: DCGAN on real MNIST digits, ~5 min on 2 CPU cores
	$(BIN)/python -m gan_lightning fit --config configs/quickstart.yaml

test: $(STAMP) ## the whole test suite (unit, CLI end to end, resume)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP) ## ruff
	$(BIN)/ruff check gan_lightning tests benchmarks

format: $(STAMP) ## ruff format + import sorting
	$(BIN)/ruff check --fix gan_lightning tests benchmarks
	$(BIN)/ruff format gan_lightning tests benchmarks

bench-gpu: $(STAMP) ## CUDA only: fp32 eager vs bf16 + compile + channels_last, G steps/s and peak memory -> docs/gpu.md
	$(BIN)/python benchmarks/gpu.py

cluster: ## start a one-node SLURM cluster on this machine (apt-get, root), for slurm/train.sbatch and its tests
	slurm/local_cluster.sh

clean: ## remove run outputs and caches (keeps .venv and data/)
	rm -rf runs lightning_logs wandb .pytest_cache .ruff_cache
