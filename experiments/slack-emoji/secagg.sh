#!/usr/bin/env bash
# The federated pipeline with and without secure aggregation (Flower's SecAgg+) in the Flower
# Simulation Engine, on a smaller personal-content population (sandbox/conf/experiment/slack-emoji-secagg.yaml):
# FedAvg(M) and DP-FedAvg at ε = 4, each with federation.secagg=false|true, audited by server_view
# (→ claim server-sees-only-aggregates; the SecAgg+ runs retrain their control without SecAgg+) and
# canary_clients (→ claim cannot-memorize).
# One command: bash experiments/slack-emoji/secagg.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji-secagg}
RUNS=$(for v in fedavgm dp4; do for s in False True; do echo "$v-secagg$s-server_view $v-secagg$s-canary_clients"; done; done)
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=slack-emoji-secagg hydra.sweep.dir="$OUT"
check_runs $? $RUNS
for v in fedavgm dp4; do
  for s in False True; do
    echo "== claim server-sees-only-aggregates on $v, secagg=$s"
    "$PY" -m sandbox.claim server-sees-only-aggregates "$OUT/$v-secagg$s-server_view"
    code=$?; is_result "$code" || { echo "claim check failed (exit $code)" >&2; exit "$code"; }
    echo "== claim cannot-memorize on $v, secagg=$s"
    "$PY" -m sandbox.claim cannot-memorize "$OUT/$v-secagg$s-canary_clients"
    code=$?; is_result "$code" || { echo "claim check failed (exit $code)" >&2; exit "$code"; }
  done
done
"$PY" -m sandbox.summary "$OUT"
