#!/usr/bin/env bash
# bf16 autocast on the CPU against fp32: the demo's two models (AVC -> AVSA and AVC-only) trained
# in both precisions with pretraining seeds $SEEDS (default 0 1 2) on the demo's shards
# (otherwise the demo recipe), each scored on the binary tasks (make eval-avsa), then compared
# paired by seed: runs/demo_bf16_{avsa,avc}.md (docs/RESULTS.md, "bf16 on the CPU"). The fp32
# runs are the demo's own (runs/demo_{avsa,avc}, runs/demo_{kind}_s<seed>): a seed make demo /
# make demo-seeds has not trained yet is trained here. After make demo; resumable (a run whose
# checkpoint exists is not retrained); two jobs at a time, one thread each; about 2 min per
# AVC-only run and 4 per AVSA run on 2 cores.
#   SEEDS="0 1 2 3 4 5 6 7" KINDS=avc bash scripts/bf16_demo_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
var() { make --no-print-directory -f Makefile -f - "print-$1" <<< $'print-%:\n\t@echo $($*)'; }
SHARDS=$(var DEMO_SHARDS) EXP=$(var DEMO_EXP) TRAIN=$(var DEMO_TRAIN) AVC=$(var DEMO_AVC)
read -r -a SEEDS <<< "${SEEDS:-0 1 2}"
read -r -a KINDS <<< "${KINDS:-avsa avc}"
LOGS=runs/demo_logs
mkdir -p "$LOGS"

run_name() {   # run_name KIND SEED PRECISION: the run folder's name
  local kind=$1 seed=$2 precision=$3
  if [[ $precision == bf16 ]]; then echo "demo_bf16_${kind}_s$seed"
  elif [[ $seed == 0 ]]; then echo "demo_$kind"
  else echo "demo_${kind}_s$seed"; fi
}
one() {   # one KIND SEED PRECISION: train (unless done) and score one model
  local kind=$1 seed=$2 precision=$3 exp=$EXP args=$TRAIN run
  run=$(run_name "$kind" "$seed" "$precision")
  [[ $kind == avc ]] && exp=avc args=$AVC
  [[ -f runs/$run/ckpt.pt ]] || make --no-print-directory train EXP="$exp" SHARDS="$SHARDS" \
    ARGS="$args optim.precision=$precision run.name=$run run.seed=$seed run.overwrite=true"
  [[ -f runs/$run/eval_binary_random.json ]] || \
    make --no-print-directory eval-avsa CKPT="runs/$run/ckpt.pt"
}

source scripts/two_jobs.sh
for seed in "${SEEDS[@]}"; do
  for kind in "${KINDS[@]}"; do
    for precision in fp32 bf16; do
      log=$LOGS/${precision}_${kind}_$seed.log
      echo "==> $kind, $precision, seed $seed (log: $log)"
      spawn "$log" one "$kind" "$seed" "$precision"
    done
  done
done
wait_jobs

group() {   # group KIND PRECISION: the comma-separated run folders, in seed order
  local list=() seed
  for seed in "${SEEDS[@]}"; do list+=("runs/$(run_name "$1" "$seed" "$2")"); done
  (IFS=,; echo "${list[*]}")
}
for kind in "${KINDS[@]}"; do
  .venv/bin/python -m evals.seed_summary "${kind}_bf16=$(group "$kind" bf16)" \
    "$kind=$(group "$kind" fp32)" --out "runs/demo_bf16_$kind.md"
done
echo "==> $(printf 'runs/demo_bf16_%s.md ' "${KINDS[@]}")"
