#!/usr/bin/env bash
# LinkedIn-style job suggestions: the product's approach (centralized, or "anonymized and
# aggregated" = federated without DP) against federated user-level DP at ε = 1, 4, 8, each
# audited with suggestions-only attacks and checked against sandbox/conf/claim/anonymized-aggregated.
# The runs are sandbox/conf/experiment/linkedin-jobs.yaml (one per variant/linkedin-jobs/*.yaml).
# One command: bash experiments/linkedin-jobs/run.sh [OUT_DIR]   (~25 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/linkedin-jobs}
RUNS="central fedavgm dp1 dp4 dp8"
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=linkedin-jobs hydra.sweep.dir="$OUT"
check_runs $? $RUNS
"$PY" -m sandbox.summary "$OUT"
