#!/usr/bin/env bash
# Slack-style emoji suggestions, federated, on the personal-content corpus (data=personal): the
# promise tested on the federated pipeline itself (sandbox/conf/experiment/slack-emoji-federated.yaml).
# For FedAvg(M) without DP and DP-FedAvg at ε = 1, 4, 8 (user level), two trainings each:
#   *-canary_clients: 1,000 canary clients and the one-run ε estimate → claim cannot-memorize
#   *-server_view:    what the server receives, attacked              → claim server-sees-only-aggregates
# The FedAvg and ε = 1 models are also re-audited at model level (user-level LiRA, 16 shadows; the
# corpus canaries, at ε = 1 with the 10^6-secret extraction search) into their run directories.
# Results: experiments/slack-emoji/README.md, "The federated pipeline (personal-content corpus)".
# One command: bash experiments/slack-emoji-federated/run.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji-federated}
VARIANTS="fedavgm dp1 dp4 dp8"
RUNS=$(for v in $VARIANTS; do echo "$v-canary_clients $v-server_view"; done)
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=slack-emoji-federated hydra.sweep.dir="$OUT"
check_runs $? $RUNS
# Model-level audits of the FedAvg and the ε = 1 models, kept in their run directories, so that
# cannot-memorize reads the canary-client estimate, LiRA, exposure (and, at ε = 1, extraction) of one model
for v in fedavgm dp1; do
  for audit in lira canary; do
    rm -rf "$OUT/$v-canary_clients/audits/$audit"
    extra=""; [ "$audit" = canary ] && [ "$v" = fedavgm ] && extra="audit.extraction=false"
    "$PY" -m sandbox.audit "$OUT/$v-canary_clients" audit=$audit $extra
    code=$?
    is_result "$code" || { echo "re-audit $audit of $v failed (exit $code)" >&2; exit "$code"; }
  done
done
for v in $VARIANTS; do
  echo "== claim cannot-memorize on $v (canary clients; FedAvg and ε = 1: with their LiRA and canary re-audits)"
  "$PY" -m sandbox.claim cannot-memorize "$OUT/$v-canary_clients"
  code=$?; is_result "$code" || { echo "claim check on $v failed (exit $code)" >&2; exit "$code"; }
  echo "== claim server-sees-only-aggregates on $v"
  "$PY" -m sandbox.claim server-sees-only-aggregates "$OUT/$v-server_view"
  code=$?; is_result "$code" || { echo "claim check on $v failed (exit $code)" >&2; exit "$code"; }
done
"$PY" -m sandbox.summary "$OUT"
