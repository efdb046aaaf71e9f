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
CKPT       ?= runs/$(EXP)/ckpt.pt
EIGENSCAPE_DIR ?=
CLIP       ?=
IN         ?=
OUT        ?= embeddings.h5
NPROC      ?= 2
UCF_DIR    ?=
HMDB_DIR   ?=
SPLIT      ?= 1
PROTOCOL   ?= finetune
MS_EXP     ?= multisensory
SYNC_SHARDS ?= data/shards/synthetic_sync
PYTEST_ARGS ?=

# The CPU recipe used by `make demo` (tiny encoders, crops resampled to 56 px x 4 frames).
TINY_CPU   ?= model.preset=tiny model.feature_dim=64 model.video_input_size=56 \
              model.video_input_frames=4 data.batch_size=8 optim.lr=1e-3
# Demo: Wang et al.'s FOA+FOA-IV+YOLO with the AVC -> AVSA curriculum (6 + 4 epochs), and an
# AVC-only model on the same inputs for comparison, as many epochs (Morgado et al. compare
# equal epochs), trained alongside it; 56 px crops in the shards (the tiny preset's input size).
DEMO_EXP   ?= foa_iv_yolo
DEMO_TRAIN ?= $(TINY_CPU) curriculum.epochs=10 curriculum.switch_epoch=6
DEMO_AVC   ?= $(TINY_CPU) curriculum.epochs=10 data.audio_input=foa_iv data.viewpoints=yolo
DEMO_PREP  ?= viewpoints.crop_size=56 shards.clips_per_shard=25 detector.imgsz=256
DEMO_DETECTOR ?= --imgsz 256 --epochs 12 --warmup-epochs 1
DEMO_EIGEN ?= --synthetic-dir data/eigenscape_synth_demo --synthetic-duration-s 10 --segment-s 5

.PHONY: help venv data detector preprocess inspect train train-ddp eval-avsa \
        eval-eigenscape localize embed results eval-ucf eval-hmdb eval-seg \
        preprocess-sync multisensory separation demo test bench clean

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

train-ddp: $(STAMP) ## Same, on NPROC processes with torchrun (DDP; gloo on CPU, nccl on GPU)
	$(VENV)/bin/torchrun --nproc_per_node=$(NPROC) -m trainer.train \
	  --config configs/experiments/$(EXP).yaml data.shards_dir=$(SHARDS) $(ARGS)

eval-avsa: $(STAMP) ## Binary AVC/AVSA accuracy on frozen features -> runs/<name>/eval_binary.json
	$(PY) -m trainer.evaluate.binary --ckpt $(CKPT) $(ARGS)

eval-eigenscape: $(STAMP) ## Scene classification (EIGENSCAPE_DIR=real data; empty: SYNTHETIC stand-in)
	$(PY) -m trainer.evaluate.eigenscape $(if $(wildcard $(CKPT)),--ckpt $(CKPT),\
	  $(warning no checkpoint at $(CKPT): baselines only)) \
	  $(if $(EIGENSCAPE_DIR),--eigenscape-dir $(EIGENSCAPE_DIR)) $(ARGS)

localize: $(STAMP) ## Localisation maps + hit rate (CLIP=clip.mp4 for a raw clip, else test shards)
	$(PY) -m trainer.evaluate.localize --ckpt $(CKPT) $(if $(CLIP),--clip $(CLIP)) $(ARGS)

embed: $(STAMP) ## Audio embeddings of a folder of ambiX/FuMa WAVs: make embed IN=dir OUT=emb.h5
	$(PY) -m trainer.evaluate.embed --in $(IN) --out $(OUT) --ckpt $(CKPT) $(ARGS)

results: $(STAMP) ## Markdown table of every run's scores next to the published numbers
	$(PY) -m trainer.evaluate.results_table --runs runs --out results.md

eval-ucf: $(STAMP) ## UCF-101 action recognition: make eval-ucf UCF_DIR=... CKPT=... [PROTOCOL=linear SPLIT=2]
	@test -n "$(UCF_DIR)" || { echo "set UCF_DIR (folder holding UCF-101/ and ucfTrainTestlist/)"; exit 2; }
	$(PY) -m trainer.downstream.action --dataset ucf101 --root $(UCF_DIR) --split $(SPLIT) \
	  --ckpt $(CKPT) --protocol $(PROTOCOL) --out $(dir $(CKPT))ucf101-split$(SPLIT)-$(PROTOCOL) $(ARGS)

eval-hmdb: $(STAMP) ## HMDB-51 action recognition: make eval-hmdb HMDB_DIR=... CKPT=...
	@test -n "$(HMDB_DIR)" || { echo "set HMDB_DIR (folder holding hmdb51_org/ and testTrainMulti_7030_splits/)"; exit 2; }
	$(PY) -m trainer.downstream.action --dataset hmdb51 --root $(HMDB_DIR) --split $(SPLIT) \
	  --ckpt $(CKPT) --protocol $(PROTOCOL) --out $(dir $(CKPT))hmdb51-split$(SPLIT)-$(PROTOCOL) $(ARGS)

eval-seg: $(STAMP) ## 360° semantic segmentation: FPN head on frozen features of CKPT (synthetic labels)
	$(PY) -m trainer.downstream.segmentation --shards $(SHARDS) --ckpt $(CKPT) --manifest $(MANIFEST) \
	  --data-root $(DATA) --out $(dir $(CKPT))segmentation $(ARGS)

preprocess-sync: $(STAMP) ## Shards with 3 s windows (2 s of video) for the multisensory baseline
	$(PY) -m pipeline.preprocess --config configs/preprocess_sync.yaml \
	  paths.data_root=$(DATA) paths.manifest=$(MANIFEST) paths.out_dir=$(SYNC_SHARDS) \
	  $(if $(SCHEDULER),dask.scheduler=$(SCHEDULER)) $(ARGS)

multisensory: $(STAMP) ## Owens & Efros sync pretext + CAM localisation (MS_EXP=multisensory_foa for FOA)
	$(PY) -m trainer.multisensory.train --config configs/multisensory/$(MS_EXP).yaml \
	  data.shards_dir=$(SYNC_SHARDS) $(ARGS)

separation: $(STAMP) ## On/off-screen separation vs an audio-only u-net (after make multisensory)
	$(PY) -m trainer.multisensory.train --config configs/multisensory/separation.yaml \
	  data.shards_dir=$(SYNC_SHARDS) separation.pretrained=runs/multisensory/ckpt.pt $(ARGS)

# One torch/BLAS thread per process: on 2 shared cores, oversubscribed threads made small
# convolutions 25-100x slower (measured); DataLoader workers use the other core.
demo test: export OMP_NUM_THREADS := 1

# A side job of the demo: $(call demo_side,NAME,COMMANDS) runs COMMANDS in the background with
# their output in runs/demo_logs/NAME.log and its pid in the shell variable NAME; later in the
# same recipe line $(call demo_wait,NAME) waits for it (and shows the log's tail if it failed).
demo_side = mkdir -p runs/demo_logs; echo "==> alongside: $(1) (log: runs/demo_logs/$(1).log)"; \
  ( $(2) ) > runs/demo_logs/$(1).log 2>&1 & $(1)=$$!;
demo_wait = wait $$$(1) || { tail -n 20 runs/demo_logs/$(1).log; \
  echo "demo step '$(1)' failed: runs/demo_logs/$(1).log"; exit 1; }

# On 2 cores the side jobs fill the core that the foreground job leaves idle: the AVC-only
# model (10 one-viewpoint epochs, a quarter of the cost of an AVSA epoch) and its two binary
# evaluations run while the AVC -> AVSA model trains; then the AVSA model's evaluations run
# two at a time, one thread each.
demo: $(STAMP) ## The whole story on the synthetic set: data, detector, preprocess, train, evaluate
	$(MAKE) --no-print-directory data
	test -f $(DETECTOR) || $(MAKE) --no-print-directory detector ARGS="$(DEMO_DETECTOR)"
	$(MAKE) --no-print-directory preprocess ARGS="$(DEMO_PREP)"
	@$(call demo_side,avc_model,$(MAKE) --no-print-directory train EXP=avc \
	    ARGS="$(DEMO_AVC) run.name=demo_avc" && \
	  $(MAKE) --no-print-directory eval-avsa CKPT=runs/demo_avc/ckpt.pt && \
	  $(MAKE) --no-print-directory eval-avsa CKPT=runs/demo_avc/ckpt.pt ARGS="--viewpoints random") \
	$(MAKE) --no-print-directory train EXP=$(DEMO_EXP) ARGS="$(DEMO_TRAIN) run.name=demo_avsa" \
	  || { kill $$avc_model 2>/dev/null; exit 1; }; \
	$(call demo_side,avsa_random_scenes,\
	  $(MAKE) --no-print-directory eval-avsa CKPT=runs/demo_avsa/ckpt.pt ARGS="--viewpoints random" && \
	  $(MAKE) --no-print-directory eval-eigenscape CKPT=runs/demo_avsa/ckpt.pt ARGS="$(DEMO_EIGEN)") \
	$(MAKE) --no-print-directory eval-avsa CKPT=runs/demo_avsa/ckpt.pt && \
	  $(MAKE) --no-print-directory localize CKPT=runs/demo_avsa/ckpt.pt \
	  || { kill $$avc_model $$avsa_random_scenes 2>/dev/null; exit 1; }; \
	echo "==> waiting for the side jobs"; \
	$(call demo_wait,avsa_random_scenes); $(call demo_wait,avc_model)
	$(MAKE) --no-print-directory inspect ARGS="--n 4"
	$(MAKE) --no-print-directory results
	@echo "==> demo done: results.md, runs/demo_*/, runs/demo_logs/, outputs/inspect/"

test: $(STAMP) ## Run the test suite (fast; < 15 min on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks in bench/ (ratios against baselines measured in the same run)
	$(PY) bench/spatial.py
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/downstream.py

clean: ## Remove generated data, runs and caches (keeps .venv)
	rm -rf data runs outputs cache .pytest_cache
