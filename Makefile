# spatial-avsa — every user-facing target first makes sure .venv holds the pinned dependencies.
# Usage: make help

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The stamp changes whenever pyproject.toml changes, so the venv is refreshed exactly then.
STAMP      := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

# Offline hygiene for every command run from here (entry points set the same defaults).
export YOLO_OFFLINE       ?= 1
export YOLO_AUTOINSTALL   ?= false
export YOLO_CONFIG_DIR    ?= $(CURDIR)/cache/ultralytics
export NUMBA_CACHE_DIR    ?= $(CURDIR)/cache/numba
export MPLCONFIGDIR       ?= $(CURDIR)/cache/matplotlib
export MPLBACKEND         ?= Agg
export PYTHONUNBUFFERED   := 1

# Knobs (override on the command line: make train EXP=beamform_yolo ARGS="optim.lr=3e-4")
EXP        ?= avsa
ARGS       ?=
SEED       ?= 0
DATA       ?= data/synthetic
MANIFEST   ?= data_manifests/synthetic.jsonl
SHARDS     ?= data/shards/synthetic
SCHEDULER  ?=
DETECTOR   ?= models/detector/synthetic_yolo.pt
CKPT       ?= runs/$(EXP)/checkpoint.pt
EIGENSCAPE_DIR ?=
PYTEST_ARGS ?=

.PHONY: help venv data detector preprocess inspect train demo test bench clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) with the pinned dependencies (once; skipped when up to date)"
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create/refresh the virtual environment in .venv (idempotent)

data: $(STAMP) ## Generate the synthetic 360° dataset and its manifest (deterministic, SEED=0)
	$(PY) -m pipeline.synth.cli videos --out $(DATA) --manifest $(MANIFEST) --seed $(SEED) $(ARGS)

detector: $(STAMP) ## Train the offline YOLO detector on synthetic frames (writes $(DETECTOR))
	$(PY) -m pipeline.detector train --out $(dir $(DETECTOR)) --seed $(SEED) $(ARGS)

preprocess: $(STAMP) ## Decode, detect, crop, rotate/beamform, features -> sharded HDF5 (Dask)
	$(PY) -m pipeline.preprocess --config configs/preprocess.yaml \
	  paths.data_root=$(DATA) paths.manifest=$(MANIFEST) paths.out_dir=$(SHARDS) \
	  $(if $(SCHEDULER),dask.scheduler=$(SCHEDULER)) $(ARGS)

inspect: $(STAMP) ## Write PNGs showing keyframe, viewpoints, sound map and crops per sample
	$(PY) -m pipeline.inspect_shards --shards $(SHARDS) --out outputs/inspect $(ARGS)

train: $(STAMP) ## Train an experiment: make train EXP=beamform_yolo ARGS="optim.lr=3e-4"
	$(PY) -m trainer.train --config configs/experiments/$(EXP).yaml data.shards_dir=$(SHARDS) $(ARGS)

test: $(STAMP) ## Run the test suite (fast; < 15 min on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks in bench/ (ratios against baselines measured in the same run)
	$(PY) bench/spatial.py
	$(PY) bench/preprocess.py
	$(PY) bench/train.py

clean: ## Remove generated data, runs and caches (keeps .venv)
	rm -rf data runs outputs cache .pytest_cache
