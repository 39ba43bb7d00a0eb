#!/usr/bin/env bash
# Slack-style emoji suggestions: centralized training and federated averaging without DP (the
# product's approaches) against federated user-level DP-FedAvg at ε = 1. Each model is audited
# twice, with the same config and seed (so the same model: the records' model.sha256 agree):
#   *-lira:   user-level LiRA, 16 shadow models            → "cannot learn"     (membership)
#   *-canary: 150 planted canaries, 1,000 fresh ones,       → "cannot memorize"  (exposure)
#             and a search of all 10^6 secrets               → "cannot reproduce" (extraction)
# then conf/claim/cannot-memorize is checked on both audits of each model together.
# Federated runs take their positive control on a central non-private model of the same data
# (audit.control_on=central): federated averaging without DP is out of these attacks' reach
# here, so a control on it would fail whatever DP does (see README).
# One command: bash experiments/slack-emoji/run.sh [OUT_DIR]   (~15 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji}
COMMON="task=emoji data.n_canaries=150 data.n_fresh_canaries=1000 progress=false"
FED="mode=federated audit.control_on=central"
source experiments/common.sh
for audit in lira canary; do
  run central-$audit audit=$audit privacy=none
  run fedavgm-$audit audit=$audit $FED privacy=none
  run dp1-$audit audit=$audit $FED privacy=dpfedavg privacy.target_epsilon=1
done
for model in central fedavgm dp1; do
  echo "== claim cannot-memorize on $model (LiRA + canary audits of one model)"
  "$PY" -m sandbox.claim cannot-memorize "$OUT/$model-lira" "$OUT/$model-canary"
  code=$?
  [ "$code" -le 2 ] || { echo "claim check on $model failed (exit $code)" >&2; exit "$code"; }
done
"$PY" -m sandbox.summary "$OUT"
