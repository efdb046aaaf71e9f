#!/usr/bin/env bash
# `make demo-seeds`: the demo recipe's spread over pretraining seeds, after `make demo`.
# Trains seeds 1 and 2 of both demo models on the demo's shards (seed 0 is the demo itself:
# runs/demo_avsa, runs/demo_avc), evaluates every checkpoint the way the demo does (binary
# tasks, SELD, direction probe), then writes runs/demo_seeds.md: mean ± sd over the three
# pretraining seeds and paired differences (evals/seed_summary.py). Resumable: a run whose
# checkpoint exists is not retrained, an evaluation whose JSON exists is not rerun.
# Two jobs at a time, one thread each (the demo's setting on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

MAKE_CMD=(make --no-print-directory)
: "${DEMO_SHARDS:=data/shards/demo}"
: "${DEMO_EXP:=foa_iv_yolo}"
: "${DEMO_TRAIN:?}" "${DEMO_AVC:?}" "${DEMO_SELD:?}" "${DEMO_DIRECTION?}"
SEEDS=(${DEMO_SEEDS:-1 2})
LOGS=runs/demo_logs
mkdir -p "$LOGS"
[[ -f runs/demo_avsa/ckpt.pt && -f runs/demo_avc/ckpt.pt ]] || {
  echo "error: runs/demo_avsa and runs/demo_avc (seed 0) are missing: run \`make demo\` first" >&2
  exit 2; }

# one_model KIND SEED: train (unless its checkpoint exists) and evaluate one checkpoint.
one_model() {
  local kind=$1 seed=$2 run exp args
  if [[ $seed == 0 ]]; then run=demo_$kind; else run=demo_${kind}_s$seed; fi
  if [[ $kind == avsa ]]; then exp=$DEMO_EXP args=$DEMO_TRAIN; else exp=avc args=$DEMO_AVC; fi
  if [[ ! -f runs/$run/ckpt.pt ]]; then
    "${MAKE_CMD[@]}" train EXP="$exp" SHARDS="$DEMO_SHARDS" \
      ARGS="$args run.name=$run run.seed=$seed run.overwrite=true"
  fi
  [[ -f runs/$run/eval_binary_random.json ]] || "${MAKE_CMD[@]}" eval-avsa CKPT=runs/$run/ckpt.pt
  [[ -f runs/$run/eval_seld.json ]] || \
    "${MAKE_CMD[@]}" eval-seld CKPT=runs/$run/ckpt.pt ARGS="$DEMO_SELD"
  [[ -f runs/$run/eval_direction.json ]] || \
    "${MAKE_CMD[@]}" eval-direction CKPT=runs/$run/ckpt.pt ARGS="$DEMO_DIRECTION"
}

# The STARSS23-layout sets of SELD and the direction probe, made once before jobs share them.
"${MAKE_CMD[@]}" starss23-synth direction-synth

source scripts/two_jobs.sh
for seed in 0 "${SEEDS[@]}"; do
  for kind in avsa avc; do
    echo "==> $kind, pretraining seed $seed (log: $LOGS/seeds_${kind}_$seed.log)"
    spawn "$LOGS/seeds_${kind}_$seed.log" one_model "$kind" "$seed"
  done
done
wait_jobs

runs() {   # runs KIND: the comma-separated run folders of KIND, seed 0 first
  local kind=$1
  local list="runs/demo_$kind"
  for s in "${SEEDS[@]}"; do list+=",runs/demo_${kind}_s$s"; done
  echo "$list"
}
.venv/bin/python -m evals.seed_summary "avsa=$(runs avsa)" "avc=$(runs avc)" --out runs/demo_seeds.md
echo "==> runs/demo_seeds.md"
