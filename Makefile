# Harken: `make demo`, `make test`, `make recipe=NAME [set="a.b=c ..."]`. See README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-safe default; GPU users pick their CUDA build, e.g. TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" with
# PIP_INDEX_URL pointing at the matching PyTorch index.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,general
recipe ?=
set ?=
SET_ARGS := $(foreach s,$(set),--set $(s))
SYSTEM_PACKAGES := espeak-ng

.PHONY: pipeline install system-packages test demo bench-data bench-clever-hans help docs compare bench

# `make recipe=NAME`: data -> train (all stages) -> eval every checkpoint -> runs/NAME/report.md
pipeline:
	@if [ -z "$(recipe)" ]; then $(MAKE) --no-print-directory help; exit 2; fi
	$(BIN)/python -m data_builders build recipes/$(recipe).yaml $(SET_ARGS)
	$(BIN)/python -m train recipes/$(recipe).yaml $(SET_ARGS)
	$(BIN)/python -m eval watch runs/$(recipe) --once

help:
	@echo "make install              create $(VENV), install Harken and its test tools, system packages"
	@echo "make demo                 the whole pipeline on synthetic clips with a tiny backbone (CPU)"
	@echo "make test                 the test suite (CPU, no network)"
	@echo "make recipe=NAME [set=\"a.b=c ...\"]   data -> train -> eval for recipes/NAME.yaml"
	@echo "make docs                 regenerate docs/recipes.md from the recipe schema"
	@echo "make bench [runs=N] [only=a,b] [demo=1]   performance figures against their targets (docs/performance.md)"

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing -- run: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

install: system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m train.launch prebuild  # DeepSpeed's CPU ops, compiled once into .cache/ (no-op with a GPU)
	@echo "installed into $(VENV); try: make demo"

test:
	$(BIN)/python -m pytest -q

# The pipeline of `make recipe=demo` in one process (`harken demo`): the three steps import torch, transformers and
# the rest once instead of three times, about a sixth of the demo's time.
demo:
	$(BIN)/python -m recipes.harken demo $(SET_ARGS)

bench-data:
	$(BIN)/python -m data_builders.bench

# Every performance figure side by side (start-up, data, fingerprints, audio, DPO, scoring; demo=1 adds make demo).
bench:
	$(BIN)/python -m train.bench $(if $(runs),--runs $(runs)) $(if $(only),--only $(only)) $(if $(demo),--demo)

# docs/recipes.md is generated from the recipe schema (a test checks it is up to date).
docs:
	$(BIN)/python -m recipes.harken recipe schema --markdown > docs/recipes.md
# `make compare runs="runs/ours10k runs/dpo_ctp ..."`: one Table-2-shaped table (first run = reference row)
compare:
	@if [ -z "$(runs)" ]; then echo 'usage: make compare runs="runs/A runs/B ..." [out=DIR]'; exit 2; fi
	$(BIN)/python -m eval compare $(runs) --out $(or $(out),runs/compare)
# The "Clever Hans" recipe over seeds (default 0 1 2): mean ± sd of each target figure (docs/learning.md).
seeds ?= 0 1 2
bench-clever-hans:
	$(BIN)/python -m train.clever_hans_bench --seeds $(seeds)
