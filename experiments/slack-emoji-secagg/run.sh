#!/usr/bin/env bash
# The federated pipeline with and without secure aggregation (Flower's SecAgg+) in the Flower
# Simulation Engine, on a smaller personal-content population (sandbox/conf/experiment/slack-emoji-secagg.yaml):
# FedAvg(M) and DP-FedAvg at ε = 1, 4, 8, each with federation.secagg=false|true, audited by server_view
# (→ claim server-sees-only-aggregates; the SecAgg+ runs retrain their control without SecAgg+) and
# canary_clients (→ claim cannot-memorize).
# Results: experiments/slack-emoji/README.md, "With and without secure aggregation".
# One command: bash experiments/slack-emoji-secagg/run.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji-secagg}
RUNS=$(for v in fedavgm dp1 dp4 dp8; do for s in "" "secagg-"; do echo "$v-${s}server_view $v-${s}canary_clients"; done; done)
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=slack-emoji-secagg hydra.sweep.dir="$OUT"
check_runs $? $RUNS
for v in fedavgm dp1 dp4 dp8; do
  for s in "" "secagg-"; do
    echo "== claim server-sees-only-aggregates on $v-${s}server_view"
    "$PY" -m sandbox.claim server-sees-only-aggregates "$OUT/$v-${s}server_view"
    code=$?; is_result "$code" || { echo "claim check failed (exit $code)" >&2; exit "$code"; }
    echo "== claim cannot-memorize on $v-${s}canary_clients"
    "$PY" -m sandbox.claim cannot-memorize "$OUT/$v-${s}canary_clients"
    code=$?; is_result "$code" || { echo "claim check failed (exit $code)" >&2; exit "$code"; }
  done
done
"$PY" -m sandbox.summary "$OUT"
