#!/usr/bin/env bash
# Does AVSA pretraining teach *where*? The direction probe and SELD (official DCASE metrics) on
# the reproduction grid's AVC -> AVSA and AVC-only checkpoints of each seed, then the paired
# summary (evals/seed_summary.py). Run after `make reproduce` (or `--only avsa avc`):
#
#     bash scripts/grid_seeds.sh [PRESET]      # default: direction
#     KINDS="foa_iv avsa" bash scripts/grid_seeds.sh   # other grid experiments, paired
#
# Reads runs/reproduction_<preset>/{avsa,avc}-seed<N>/ckpt.pt for the seeds whose grid records
# exist (spatial: runs/reproduction/); writes eval_direction.json and eval_seld.json beside each
# checkpoint (skipped when present: resumable) and results/reproduction/<preset>/seeds_avsa_avc.md. Two jobs at a time,
# one thread each. The SELD heads use the demo's setting (2000 steps, one head seed).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-direction}
if [[ $PRESET == spatial ]]; then   # the first grid's folders (scripts/reproduce.py, Preset)
  RUNS=runs/reproduction RESULTS=results/reproduction
else
  RUNS=runs/reproduction_$PRESET RESULTS=results/reproduction/$PRESET
fi
MAKE_CMD=(make --no-print-directory)
read -ra KINDS <<< "${KINDS:-avsa avc}"     # the grid experiments to read out, paired by seed
: "${SELD_ARGS:=protocol.steps=2000 protocol.seeds=[0]}"
export OMP_NUM_THREADS=1
mkdir -p "$RUNS/logs"
seeds=()
for record in "$RESULTS/${KINDS[0]}"-seed*.json; do
  [[ -f $record ]] || continue
  seed=${record##*-seed}; seed=${seed%.json}
  all=1
  for kind in "${KINDS[@]}"; do [[ -f $RESULTS/$kind-seed$seed.json ]] || all=0; done
  (( all )) && seeds+=("$seed")
done
(( ${#seeds[@]} )) || { echo "error: no seed with records of every one of ${KINDS[*]} in $RESULTS" >&2; exit 2; }
"${MAKE_CMD[@]}" starss23-synth direction-synth     # the two sets, made once before jobs share them

evaluate() {   # evaluate RUN_DIR
  local run=$1
  [[ -f $run/eval_direction.json ]] || "${MAKE_CMD[@]}" eval-direction CKPT="$run/ckpt.pt"
  [[ -f $run/eval_seld.json ]] || "${MAKE_CMD[@]}" eval-seld CKPT="$run/ckpt.pt" ARGS="$SELD_ARGS"
}

source scripts/two_jobs.sh
for seed in "${seeds[@]}"; do
  for kind in "${KINDS[@]}"; do
    run=$RUNS/$kind-seed$seed
    echo "==> $run (log: $RUNS/logs/$kind-seed$seed.where.log)"
    spawn "$RUNS/logs/$kind-seed$seed.where.log" evaluate "$run"
  done
done
wait_jobs

group() {   # group KIND: the comma-separated run folders of KIND in seed order
  local list=() seed
  for seed in "${seeds[@]}"; do list+=("$RUNS/$1-seed$seed"); done
  (IFS=,; echo "${list[*]}")
}
groups=()
for kind in "${KINDS[@]}"; do groups+=("$kind=$(group "$kind")"); done
out=$RESULTS/seeds_$(IFS=_; echo "${KINDS[*]}").md
.venv/bin/python -m evals.seed_summary "${groups[@]}" --out "$out"
echo "==> $out"
