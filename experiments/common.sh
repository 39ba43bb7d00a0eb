# Sourced by experiments/*/run.sh: `run NAME OVERRIDES...` trains one run into $OUT/NAME with
# $COMMON overrides. A claim verdict other than PASS (exit 1 FAIL, 2 INCONCLUSIVE) is a result,
# not a failure; a run that writes no record.json, or exits otherwise, stops the experiment.
PY=${PYTHON:-.venv/bin/python}
run() {
  local name=$1; shift
  "$PY" -m sandbox $COMMON hydra.run.dir="$OUT/$name" "$@"
  local code=$?
  [ "$code" -le 2 ] || { echo "run $name failed (exit $code)" >&2; exit "$code"; }
  [ -f "$OUT/$name/record.json" ] || { echo "run $name wrote no record" >&2; exit 1; }
}
