# Sourced by the seed scripts: run jobs two at a time (one per core of the 2-core machines these
# scripts were written for, one thread each).
#   spawn LOG CMD [ARGS...]   start CMD in the background, its output in LOG; when two are
#                             running, wait for both
#   wait_jobs                 wait for the ones still running
# A failed job stops the calling script, naming the folder of its log.
JOB_PIDS=()
JOB_LOG_DIR=.

spawn() {
  local log=$1
  shift
  JOB_LOG_DIR=$(dirname "$log")
  "$@" > "$log" 2>&1 &
  JOB_PIDS+=($!)
  if (( ${#JOB_PIDS[@]} == 2 )); then wait_jobs; fi
}

wait_jobs() {
  local pid
  for pid in "${JOB_PIDS[@]}"; do
    wait "$pid" || { echo "failed: see $JOB_LOG_DIR/" >&2; exit 1; }
  done
  JOB_PIDS=()
}
