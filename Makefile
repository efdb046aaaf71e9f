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
export ULTRALYTICS_SAFE_LOAD ?= 1
export YOLO_CONFIG_DIR    ?= $(CURDIR)/cache/ultralytics
export NUMBA_CACHE_DIR    ?= $(CURDIR)/cache/numba
export MPLCONFIGDIR       ?= $(CURDIR)/cache/matplotlib
export MPLBACKEND         ?= Agg
export PYTHONUNBUFFERED   := 1

# Knobs (override on the command line: make train EXP=beamform_yolo ARGS="optim.lr=3e-4")
EXP        ?= avsa
ARGS       ?=
SEED       ?= 0
PRESET     ?= demo
DATA       ?= data/synthetic
MANIFEST   ?= data_manifests/synthetic.jsonl
SHARDS     ?= data/shards/synthetic
SCHEDULER  ?=
LIMIT      ?=
DETECTOR   ?= assets/detector/synthetic_yolo.pt
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

# The CPU recipe used by `make demo` (tiny encoders, crops resampled to 56 px x 4 frames, every
# stored window once per epoch instead of the authors' 2 random visits per clip).
TINY_CPU   ?= model.preset=tiny model.feature_dim=64 model.video_input_size=56 \
              model.video_input_frames=4 data.batch_size=8 data.avc_batch_size=0 optim.lr=1e-3 \
              data.samples_per_clip=0
# Demo: Wang et al.'s FOA+FOA-IV+YOLO with the AVC -> AVSA curriculum (5 + 3 epochs), and an
# AVC-only model on the same inputs for comparison, as many epochs (Morgado et al. compare
# equal epochs), trained alongside it; 56 px crops and 3 windows per clip in the shards (sized
# so the demo fits 15 minutes on the slower 2-core machines).
DEMO_EXP   ?= foa_iv_yolo
DEMO_TRAIN ?= $(TINY_CPU) curriculum.epochs=8 curriculum.switch_epoch=5
DEMO_AVC   ?= $(TINY_CPU) curriculum.epochs=8 data.audio_input=foa_iv data.viewpoints=yolo
DEMO_PREP  ?= viewpoints.crop_size=56 viewpoints.bank_size=8 shards.clips_per_shard=25 \
              windows.max_per_clip=3
DEMO_LOC   ?= protocol.n_clips=24
DEMO_SHARDS ?= data/shards/demo
DEMO_DETECTOR ?= --imgsz 256 --epochs 12 --warmup-epochs 1
# Scenes: the synthetic EigenScape-layout stand-in with 10 s recordings, scored in 5 s
# segments as every eval-eigenscape on the stand-in (EIGEN_SYNTH_EVAL); DEMO_EIGEN adds keys.
DEMO_EIGEN_DIR ?= data/eigenscape_synth_demo
DEMO_EIGEN_SYNTH ?= --duration-s 10
DEMO_EIGEN ?=
# SELD: the synthetic STARSS23-layout set; the heads stop early on a validation part of
# dev-train within 2000 steps, one head seed (the default: 3000 steps, 3 seeds), so the demo
# keeps its time budget.
DEMO_SELD ?= protocol.steps=2000 protocol.seeds=[0]
# Direction probe: the default protocol (K = 8 horizon viewpoints, ridge penalty chosen on dev-train).
DEMO_DIRECTION ?=
# Synthetic EigenScape-layout stand-in used by eval-eigenscape when EIGENSCAPE_DIR is empty.
EIGEN_SYNTH_DIR ?= data/eigenscape_synth
EIGEN_SYNTH_ARGS ?=
# The stand-in's recordings last 10 s, shorter than the real set's 30 s segments: score 5 s.
EIGEN_SYNTH_EVAL ?= protocol.segment_s=5
# Synthetic STARSS23-layout stand-in used by eval-seld when STARSS_DIR is empty.
STARSS_SYNTH_DIR ?= data/starss23_synth
# The direction probe's synthetic set (used when DIRECTION_DIR is empty): the STARSS23 layout
# with many short recordings of 1-2 sources, so the probe meets hundreds of directions (fitted
# on a set with few sources, a linear probe learns those directions, not direction).
DIRECTION_SYNTH_DIR ?= data/direction_synth
DIRECTION_SYNTH_ARGS ?= --n-train-per-split 100 --n-test-per-split 50 --duration-s 2 --max-sources 2
STARSS_SYNTH_ARGS ?=

.PHONY: help venv data detector preprocess verify channel-order inspect train train-ddp eval-avsa \
        eval-eigenscape eval-seld eval-direction ceiling starss23-synth direction-synth localize embed results eval-ucf eval-hmdb eval-seg \
        preprocess-sync multisensory separation reproduce reproduce-where demo demo-seeds test bench bench-gpu clean

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) with the pinned dependencies (once; skipped when up to date)"
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create/refresh the virtual environment in .venv (idempotent)

data: $(STAMP) ## Generate the synthetic 360° dataset and its manifest (SEED=0; PRESET=spatial)
	$(PY) -m pipeline.synth.cli videos --out $(DATA) --manifest $(MANIFEST) --seed $(SEED) \
	  --preset $(PRESET) $(ARGS)

detector: $(STAMP) ## Train an offline YOLO detector on synthetic frames (-> models/detector/; DETECTOR=... to use it)
	$(PY) -m pipeline.synth.detector train --out models/detector --seed $(SEED) $(ARGS)

# The detector is a prerequisite of preprocessing unless YOLO is switched off or other weights
# are given: missing default weights are trained first (make detector, ~4-8 CPU-minutes).
NEEDS_DETECTOR := $(if $(findstring detector.enabled=false,$(ARGS))$(findstring detector.weights=,$(ARGS)),,$(DETECTOR))

$(DETECTOR): | $(STAMP)
	@echo "==> no detector weights at $(DETECTOR): training the offline synthetic detector first" \
	  "(skip with ARGS=detector.enabled=false, or give detector.weights=...)"
	$(MAKE) --no-print-directory detector ARGS="--imgsz 256 --epochs 12 --warmup-epochs 1"
	mkdir -p $(dir $(DETECTOR)) && cp models/detector/synthetic_yolo.pt $(DETECTOR)

preprocess: $(STAMP) $(NEEDS_DETECTOR) ## Decode, detect, crop, rotate/beamform, features -> sharded HDF5 (Dask)
	$(PY) -m pipeline.preprocess --config configs/preprocess.yaml \
	  paths.data_root=$(DATA) paths.manifest=$(MANIFEST) paths.out_dir=$(SHARDS) \
	  detector.weights=$(DETECTOR) $(if $(LIMIT),paths.max_clips=$(LIMIT)) \
	  $(if $(SCHEDULER),dask.scheduler=$(SCHEDULER)) $(ARGS)

verify: $(STAMP) ## Check every shard's size and sha256 against shards.jsonl; a plain rerun of preprocessing rebuilds what it flags (SHARDS=...)
	$(PY) -m pipeline.shards --verify $(SHARDS)

channel-order: $(STAMP) ## Which channel order the stored FOA agrees with, against detections (SHARDS=...)
	$(PY) -m pipeline.channel_order --shards $(SHARDS) $(ARGS)

inspect: $(STAMP) ## Write PNGs showing keyframe, viewpoints, sound map and crops per sample
	$(PY) -m pipeline.inspect_shards --shards $(SHARDS) --out outputs/inspect $(ARGS)

train: $(STAMP) ## Train an experiment: make train EXP=beamform_yolo ARGS="optim.lr=3e-4"
	$(PY) -m trainer.train --config configs/experiments/$(EXP).yaml data.shards_dir=$(SHARDS) $(ARGS)

train-ddp: $(STAMP) ## Same, on NPROC processes with torchrun (DDP; gloo on CPU, nccl on GPU)
	$(VENV)/bin/torchrun --nproc_per_node=$(NPROC) -m trainer.train \
	  --config configs/experiments/$(EXP).yaml data.shards_dir=$(SHARDS) $(ARGS)

eval-avsa: $(STAMP) ## Binary AVC/AVSA with controls, uniform viewpoints -> runs/<name>/eval_binary[_<set>].json
	$(PY) -m evals.audio.binary ckpt=$(CKPT) $(ARGS)

eval-eigenscape: $(STAMP) ## Scene classification (EIGENSCAPE_DIR=real data; empty: SYNTHETIC stand-in)
	$(if $(EIGENSCAPE_DIR),,$(PY) -m pipeline.synth.cli eigenscape --out $(EIGEN_SYNTH_DIR) $(EIGEN_SYNTH_ARGS))
	$(PY) -m evals.audio.scenes $(if $(wildcard $(CKPT)),ckpt=$(CKPT),\
	  $(warning no checkpoint at $(CKPT): baselines only)) \
	  data_dir=$(if $(EIGENSCAPE_DIR),$(EIGENSCAPE_DIR),$(EIGEN_SYNTH_DIR) $(EIGEN_SYNTH_EVAL)) $(ARGS)

starss23-synth: $(STAMP) ## The synthetic STARSS23-layout set eval-seld uses without STARSS_DIR (resumable)
	$(PY) -m pipeline.synth.cli starss23 --out $(STARSS_SYNTH_DIR) $(STARSS_SYNTH_ARGS)

eval-seld: $(STAMP) $(if $(STARSS_DIR),,starss23-synth) ## SELD on STARSS23 with DCASE metrics (STARSS_DIR=real data; empty: SYNTHETIC stand-in)
	$(PY) -m evals.audio.seld $(if $(wildcard $(CKPT)),ckpt=$(CKPT),\
	  $(warning no checkpoint at $(CKPT): DCASE-feature baseline only)) \
	  starss_dir=$(if $(STARSS_DIR),$(STARSS_DIR),$(STARSS_SYNTH_DIR)) $(ARGS)

direction-synth: $(STAMP) ## The direction probe's synthetic set: 300 STARSS23-layout recordings of 2 s (resumable)
	$(PY) -m pipeline.synth.cli starss23 --out $(DIRECTION_SYNTH_DIR) $(DIRECTION_SYNTH_ARGS)

eval-direction: $(STAMP) $(if $(DIRECTION_DIR),,direction-synth) ## Direction probe: linear probe from frozen read-outs to the source direction (DIRECTION_DIR=a STARSS23 folder; empty: SYNTHETIC)
	$(PY) -m evals.audio.direction $(if $(wildcard $(CKPT)),ckpt=$(CKPT),\
	  $(warning no checkpoint at $(CKPT): hand features only)) \
	  data_dir=$(or $(DIRECTION_DIR),$(DIRECTION_SYNTH_DIR)) $(ARGS)

# The shards each preset's ceiling is measured on: the demo's, or make reproduce's set of the
# preset (made first when missing); CEILING_SHARDS= for any other synthetic shard set. The JSON
# goes beside the preset's grid records.
CEILING_SHARDS ?= $(if $(filter demo,$(PRESET)),$(DEMO_SHARDS),data/shards/$(PRESET))
CEILING_OUT = results/reproduction/$(if $(filter demo spatial,$(PRESET)),,$(PRESET)/)ceiling-$(PRESET).json
ceiling: $(STAMP) ## AVSA-bin ceilings: a network trained on the decision + a ground-truth oracle (PRESET=demo|spatial|direction)
	$(if $(filter spatial direction,$(PRESET)),$(PY) scripts/reproduce.py --preset $(PRESET) --data-only)
	@test -f $(CEILING_SHARDS)/shards.jsonl || { echo "error: no shards at $(CEILING_SHARDS)" \
	  "(PRESET=demo: run make demo first; or give CEILING_SHARDS=...)"; exit 2; }
	$(PY) -m evals.av.ceiling preset=$(PRESET) shards_dir=$(CEILING_SHARDS) \
	  out=$(CEILING_OUT) $(ARGS)

localize: $(STAMP) ## Localisation maps + hit rate (CLIP=clip.mp4 for a raw clip, else test shards)
	$(PY) -m evals.av.localize ckpt=$(CKPT) $(if $(CLIP),clip=$(CLIP)) $(ARGS)

embed: $(STAMP) ## Audio embeddings of a folder of ambiX/FuMa WAVs: make embed IN=dir OUT=emb.h5
	$(PY) -m evals.audio.embed in_dir=$(IN) out=$(OUT) ckpt=$(CKPT) $(ARGS)

reproduce: $(STAMP) ## Paper comparisons on the direction preset (5 seeds, 200 test clips x 4 yaws; ARGS="--preset spatial" for the first grid), resumable -> results/reproduction/, docs/RESULTS.md
	$(PY) scripts/reproduce.py $(ARGS)

reproduce-where: $(STAMP) ## Direction probe + SELD on the grid's AVSA and AVC checkpoints of every seed, paired (PRESET=direction|spatial; KINDS="foa_iv avc_foa_iv" for the FOA-IV pair) -> results/reproduction/<preset>/seeds_<kinds>.md
	KINDS="$(or $(KINDS),avsa avc)" bash scripts/grid_seeds.sh $(if $(filter demo,$(PRESET)),direction,$(PRESET))

results: $(STAMP) ## Markdown table of every run's scores next to the published numbers
	$(PY) -m evals.results_table runs=runs out=results.md

eval-ucf: $(STAMP) ## UCF-101 action recognition: make eval-ucf UCF_DIR=... CKPT=... [PROTOCOL=linear SPLIT=2]
	@test -n "$(UCF_DIR)" || { echo "error: set UCF_DIR (folder holding UCF-101/ and ucfTrainTestlist/)"; exit 2; }
	$(PY) -m evals.video.action dataset=ucf101 root=$(UCF_DIR) split=$(SPLIT) \
	  ckpt=$(CKPT) protocol=$(PROTOCOL) out=$(dir $(CKPT))ucf101-split$(SPLIT)-$(PROTOCOL) $(ARGS)

eval-hmdb: $(STAMP) ## HMDB-51 action recognition: make eval-hmdb HMDB_DIR=... CKPT=...
	@test -n "$(HMDB_DIR)" || { echo "error: set HMDB_DIR (folder holding hmdb51_org/ and testTrainMulti_7030_splits/)"; exit 2; }
	$(PY) -m evals.video.action dataset=hmdb51 root=$(HMDB_DIR) split=$(SPLIT) \
	  ckpt=$(CKPT) protocol=$(PROTOCOL) out=$(dir $(CKPT))hmdb51-split$(SPLIT)-$(PROTOCOL) $(ARGS)

eval-seg: $(STAMP) ## 360° semantic segmentation: FPN head on frozen features of CKPT (synthetic labels)
	$(PY) -m evals.video.segmentation shards=$(SHARDS) ckpt=$(CKPT) manifest=$(MANIFEST) \
	  data_root=$(DATA) out=$(dir $(CKPT))segmentation $(ARGS)

preprocess-sync: $(STAMP) ## Shards with 3 s windows (2 s of video) for the multisensory baseline
	$(PY) -m pipeline.preprocess --config configs/preprocess_sync.yaml \
	  paths.data_root=$(DATA) paths.manifest=$(MANIFEST) paths.out_dir=$(SYNC_SHARDS) \
	  $(if $(SCHEDULER),dask.scheduler=$(SCHEDULER)) $(ARGS)

multisensory: $(STAMP) ## Owens & Efros sync pretext + CAM localisation (MS_EXP=multisensory_foa for FOA)
	$(PY) -m baselines.multisensory.train --config configs/baselines/$(MS_EXP).yaml \
	  data.shards_dir=$(SYNC_SHARDS) $(ARGS)

separation: $(STAMP) ## On/off-screen separation vs an audio-only u-net (after make multisensory)
	$(PY) -m baselines.multisensory.train --config configs/baselines/separation.yaml \
	  data.shards_dir=$(SYNC_SHARDS) separation.pretrained=runs/multisensory/ckpt.pt $(ARGS)

# One torch/BLAS thread per process: on 2 shared cores, oversubscribed threads made small
# convolutions 25-100x slower (measured); DataLoader workers use the other core.
demo demo-seeds test: export OMP_NUM_THREADS := 1

# scripts/demo.sh reads its settings from the environment.
export DEMO_SHARDS DEMO_EXP DETECTOR DEMO_TRAIN DEMO_AVC DEMO_PREP DEMO_DETECTOR DEMO_LOC \
       DEMO_EIGEN_DIR DEMO_EIGEN_SYNTH DEMO_EIGEN DEMO_SELD DEMO_DIRECTION
demo: $(STAMP) ## The whole story on the synthetic set: data, detector, preprocess, train, evaluate
	bash scripts/demo.sh

demo-seeds: $(STAMP) ## After make demo: seeds 1, 2 of both demo models, every evaluation, runs/demo_seeds.md (~25 min)
	bash scripts/demo_seeds.sh

test: $(STAMP) ## Run the test suite (~2 min of tests on 2 cores, after the one-time set-up)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks in bench/ (ratios against baselines measured in the same run)
	$(PY) bench/spatial.py
	$(PY) bench/preprocess.py
	$(PY) bench/train.py
	$(PY) bench/downstream.py

bench-gpu: $(STAMP) ## The paper preset's AVC/AVSA steps on CUDA: clips/s, step split, peak memory (ARGS=...)
	$(PY) bench/gpu.py $(ARGS)

clean: ## Remove generated data, runs and caches (keeps .venv)
	rm -rf data runs outputs cache .pytest_cache
