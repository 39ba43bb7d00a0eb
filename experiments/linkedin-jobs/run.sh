#!/usr/bin/env bash
# LinkedIn-style job suggestions: the product's approach (centralized, or "anonymized and
# aggregated" = federated without DP) against federated user-level DP at ε = 1, 4, 8, each
# audited with suggestions-only attacks and checked against conf/claim/anonymized-aggregated.
# One command: bash experiments/linkedin-jobs/run.sh [OUT_DIR]   (~25 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/linkedin-jobs}
FED="mode=federated federation.local_epochs=5 federation.rounds=200"
COMMON="task=jobs audit=suggestions claim=anonymized-aggregated progress=false"
source experiments/common.sh
run central privacy=none
run fedavgm $FED privacy=none
for eps in 1 4 8; do
  run dp$eps $FED federation.server_optimizer=fedavg privacy=dpfedavg privacy.target_epsilon=$eps
done
"$PY" -m sandbox.summary "$OUT"
