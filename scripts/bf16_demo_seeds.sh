#!/usr/bin/env bash
# bf16 autocast on the CPU against fp32: the demo's two models (AVC -> AVSA and AVC-only) trained
# in bf16 with pretraining seeds 0, 1, 2 on the demo's shards (otherwise the demo recipe), each
# scored on the binary tasks (make eval-avsa), then compared with the fp32 runs of
# `make demo` + `make demo-seeds` paired by seed: runs/demo_bf16_{avsa,avc}.md
# (docs/RESULTS.md, "bf16 on the CPU"). After make demo and make demo-seeds; ~20 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
var() { make --no-print-directory -f Makefile -f - "print-$1" <<< $'print-%:\n\t@echo $($*)'; }
SHARDS=$(var DEMO_SHARDS) EXP=$(var DEMO_EXP) TRAIN=$(var DEMO_TRAIN) AVC=$(var DEMO_AVC)
mkdir -p runs/demo_logs
one() {   # one KIND SEED: train in bf16 (unless done) and score one model
  local kind=$1 seed=$2 run=demo_bf16_$1_s$2 exp=$EXP args=$TRAIN
  [[ $kind == avc ]] && exp=avc args=$AVC
  [[ -f runs/$run/ckpt.pt ]] || make --no-print-directory train EXP="$exp" SHARDS="$SHARDS" \
    ARGS="$args optim.precision=bf16 run.name=$run run.seed=$seed run.overwrite=true"
  [[ -f runs/$run/eval_binary_random.json ]] || \
    make --no-print-directory eval-avsa CKPT="runs/$run/ckpt.pt"
}
for seed in 0 1 2; do
  for kind in avsa avc; do one "$kind" "$seed" > "runs/demo_logs/bf16_${kind}_$seed.log" 2>&1; done
done
fp32() { echo "runs/demo_$1,runs/demo_$1_s1,runs/demo_$1_s2"; }
bf16() { echo "runs/demo_bf16_$1_s0,runs/demo_bf16_$1_s1,runs/demo_bf16_$1_s2"; }
for kind in avsa avc; do
  .venv/bin/python -m evals.seed_summary "${kind}_bf16=$(bf16 $kind)" "$kind=$(fp32 $kind)" \
    --out "runs/demo_bf16_$kind.md"
done
echo "==> runs/demo_bf16_avsa.md, runs/demo_bf16_avc.md"
