#!/usr/bin/env bash
# LinkedIn-style job suggestions: the product's approach (centralized, or "anonymized and
# aggregated" = federated without DP) against federated user-level DP at ε = 1, 4, 8, each
# audited with suggestions-only attacks and checked against conf/claim/anonymized-aggregated.
# One command: bash experiments/linkedin-jobs/run.sh [OUT_DIR]   (~10 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-outputs/experiments/linkedin-jobs}
FED="mode=federated federation.local_epochs=5 federation.rounds=200"
COMMON="task=jobs audit=suggestions claim=anonymized-aggregated progress=false"
run() {  # name, overrides...; a claim verdict other than PASS is an exit code, not a failure here
  local name=$1; shift
  "$PY" -m sandbox $COMMON hydra.run.dir="$OUT/$name" "$@"
  local code=$?
  [ "$code" -le 2 ] || { echo "run $name failed (exit $code)" >&2; exit "$code"; }
  [ -f "$OUT/$name/record.json" ] || { echo "run $name wrote no record" >&2; exit 1; }
}
run central privacy=none
run fedavgm $FED privacy=none
for eps in 1 4 8; do
  run dp$eps $FED federation.server_optimizer=fedavg privacy=dpfedavg privacy.target_epsilon=$eps
done
"$PY" -m sandbox.summary "$OUT"
