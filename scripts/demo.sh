#!/usr/bin/env bash
# The demo's steps: synthetic data -> detector -> shards -> two models -> evaluations -> table.
# Run through `make demo` (which builds .venv first and exports the settings below); every step
# is an ordinary make target, so each can be rerun alone (see the README's manual path).
#
# On 2 cores the side jobs fill the core the foreground job leaves idle: the AVC-only model
# (8 one-viewpoint epochs, a quarter of the cost of an AVSA epoch) and its binary evaluation
# run while the AVC -> AVSA model trains; then the AVSA model's evaluations run two at a time,
# one thread each: binary on uniform viewpoints (the authors' protocol) and localisation in
# front, then the direction probe; binary on its YOLO viewpoints, scenes and SELD (synthetic
# STARSS23 layout) alongside.
# Side-job logs: runs/demo_logs/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

MAKE_CMD=(make --no-print-directory)
: "${DEMO_SHARDS:=data/shards/demo}"
: "${DEMO_EXP:=foa_iv_yolo}"
: "${DETECTOR:=assets/detector/synthetic_yolo.pt}"
: "${DEMO_TRAIN:?}" "${DEMO_AVC:?}" "${DEMO_PREP:?}" "${DEMO_DETECTOR:?}"
: "${DEMO_EIGEN_DIR:?}" "${DEMO_EIGEN_SYNTH:?}" "${DEMO_EIGEN?}" "${DEMO_LOC:?}" "${DEMO_SELD:?}" "${DEMO_DIRECTION?}"
LOGS=runs/demo_logs
mkdir -p "$LOGS"

declare -A SIDE_PIDS=()
side() {   # side NAME COMMAND...: run COMMAND in the background, output in runs/demo_logs/NAME.log
  local name=$1; shift
  echo "==> alongside: $name (log: $LOGS/$name.log)"
  ( "$@" ) > "$LOGS/$name.log" 2>&1 &
  SIDE_PIDS[$name]=$!
}
wait_side() {   # wait_side NAME: wait for a side job; show its log's tail if it failed
  local name=$1
  if ! wait "${SIDE_PIDS[$name]}"; then
    tail -n 20 "$LOGS/$name.log"
    echo "demo step '$name' failed: $LOGS/$name.log" >&2
    exit 1
  fi
  unset "SIDE_PIDS[$name]"
}
cleanup() { for pid in "${SIDE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

avc_model() {
  "${MAKE_CMD[@]}" train EXP=avc SHARDS="$DEMO_SHARDS" ARGS="$DEMO_AVC run.name=demo_avc"
  "${MAKE_CMD[@]}" eval-avsa CKPT=runs/demo_avc/ckpt.pt
}
avsa_yolo_scenes() {
  "${MAKE_CMD[@]}" eval-avsa CKPT=runs/demo_avsa/ckpt.pt ARGS="protocol.viewpoints=yolo"
  "${MAKE_CMD[@]}" eval-eigenscape CKPT=runs/demo_avsa/ckpt.pt \
    EIGEN_SYNTH_DIR="$DEMO_EIGEN_DIR" EIGEN_SYNTH_ARGS="$DEMO_EIGEN_SYNTH" ARGS="$DEMO_EIGEN"
  "${MAKE_CMD[@]}" eval-seld CKPT=runs/demo_avsa/ckpt.pt ARGS="$DEMO_SELD"
}

"${MAKE_CMD[@]}" data
if [[ ! -f "$DETECTOR" ]]; then
  "${MAKE_CMD[@]}" detector ARGS="$DEMO_DETECTOR"
fi
"${MAKE_CMD[@]}" preprocess SHARDS="$DEMO_SHARDS" ARGS="$DEMO_PREP"
# SELD's STARSS23-layout set, made here so the side job's SELD only reads it.
"${MAKE_CMD[@]}" starss23-synth

side avc_model avc_model
"${MAKE_CMD[@]}" train EXP="$DEMO_EXP" SHARDS="$DEMO_SHARDS" ARGS="$DEMO_TRAIN run.name=demo_avsa"
side avsa_yolo_scenes avsa_yolo_scenes
"${MAKE_CMD[@]}" eval-avsa CKPT=runs/demo_avsa/ckpt.pt
"${MAKE_CMD[@]}" localize CKPT=runs/demo_avsa/ckpt.pt ARGS="$DEMO_LOC"
"${MAKE_CMD[@]}" eval-direction CKPT=runs/demo_avsa/ckpt.pt ARGS="$DEMO_DIRECTION"
echo "==> waiting for the side jobs"
wait_side avsa_yolo_scenes
wait_side avc_model

"${MAKE_CMD[@]}" inspect SHARDS="$DEMO_SHARDS" ARGS="--n 4"
"${MAKE_CMD[@]}" results
echo "==> demo done: results.md (the table), runs/demo_avsa/ and runs/demo_avc/ (checkpoints,"
echo "    curves, evaluation JSONs and their configs), runs/demo_logs/, outputs/inspect/ (PNGs)"
