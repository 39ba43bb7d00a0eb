# Sourced by experiments/*/run.sh after `python -m sandbox -m +experiment=NAME hydra.sweep.dir=$OUT`
# (sandbox/conf/experiment/NAME.yaml: one run per variant, into $OUT/VARIANT):
#   check_runs CODE RUN...   the sweep's exit code and the run directories it must have written.
# Exit codes follow sandbox/cli.py. A claim verdict other than PASS (1 FAIL, 2 INCONCLUSIVE) and a
# probable DP bug (4: its record is kept, status "failed") are results, not failures; 3 (bad input
# or config), any other code, or a run that wrote no record.json stops the experiment.
PY=${PYTHON:-.venv/bin/python}
is_result() { case "$1" in 0|1|2|4) return 0 ;; *) return 1 ;; esac; }
check_runs() {
  local code=$1; shift
  is_result "$code" || { echo "training failed (exit $code)" >&2; exit "$code"; }
  local name
  for name in "$@"; do
    [ -f "$OUT/$name/record.json" ] || { echo "run $name wrote no record" >&2; exit 1; }
  done
}
# Before training: an earlier experiment's records in $OUT must not pass for this one's.
clear_runs() {
  local name
  for name in "$@"; do rm -f "$OUT/$name/record.json"; done
}
