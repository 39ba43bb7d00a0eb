#!/usr/bin/env bash
# Slack-style emoji suggestions: centralized training and federated averaging without DP (the
# product's approaches) against federated user-level DP-FedAvg at ε = 1, each attacked with
# user-level LiRA (16 shadow models, a positive control for the DP run) and checked against
# conf/claim/cannot-memorize ("models cannot learn, memorize or reproduce customer data").
# One command: bash experiments/slack-emoji/run.sh [OUT_DIR]   (~7 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji}
COMMON="task=emoji audit=lira claim=cannot-memorize progress=false"
source experiments/common.sh
run central privacy=none
run fedavgm mode=federated privacy=none
run dp1 mode=federated privacy=dpfedavg privacy.target_epsilon=1
"$PY" -m sandbox.summary "$OUT"
