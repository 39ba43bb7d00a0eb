#!/usr/bin/env bash
# Slack-style channel suggestions: the product's approach (centralized, or "anonymized and
# aggregated" = federated without DP) against federated user-level DP at ε = 1, 4, 8, each
# audited with suggestions-only attacks and checked against sandbox/conf/claim/anonymized-aggregated.
# The runs are sandbox/conf/experiment/slack-channels.yaml (one per variant/slack-channels/*.yaml):
# federated: 400 rounds, 5 local epochs, FedAdam on the server (FedAvgM at 200-500 rounds stayed at
# popularity's recall: measured, see README); central: 60 epochs (8 leave it below popularity).
# One command: bash experiments/slack-channels/run.sh [OUT_DIR]   (~6 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-channels}
RUNS="central fedadam dp1 dp4 dp8"
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=slack-channels hydra.sweep.dir="$OUT"
check_runs $? $RUNS
"$PY" -m sandbox.summary "$OUT"
