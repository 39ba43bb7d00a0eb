#!/usr/bin/env bash
# Slack-style emoji suggestions: centralized training and federated averaging without DP (the
# product's approaches) against federated user-level DP-FedAvg at ε = 1. Each model is trained
# once and audited twice (the second audit re-audits the trained model from its run directory,
# python -m sandbox.audit RUN_DIR, into RUN_DIR/audits/canary, so both records carry its model.sha256; DP noise and sampling come
# from the OS CSPRNG, so a second training would be another model):
#   *-lira:   user-level LiRA, 16 shadow models            → "cannot learn"     (membership)
#   *-canary: 150 planted canaries, 1,000 fresh ones,       → "cannot memorize"  (exposure)
#             and a search of all 10^6 secrets               → "cannot reproduce" (extraction)
# then sandbox/conf/claim/cannot-memorize is checked on both audits of each model together.
# Federated runs take their positive control on a central non-private model of the same data
# (audit.control_on=central): federated averaging without DP is out of these attacks' reach
# here, so a control on it would fail whatever DP does (see README).
# The training runs are sandbox/conf/experiment/slack-emoji.yaml (one per variant/slack-emoji/*.yaml).
# One command: bash experiments/slack-emoji/run.sh [OUT_DIR]   (~15 min on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-outputs/experiments/slack-emoji}
RUNS="central-lira fedavgm-lira dp1-lira"
FED_AUDIT="audit.control_on=central"
source experiments/common.sh
clear_runs $RUNS
"$PY" -m sandbox -m +experiment=slack-emoji hydra.sweep.dir="$OUT"
check_runs $? $RUNS
for model in central fedavgm dp1; do  # the canary audit of the same trained model, kept in its run directory
  keep=$FED_AUDIT; [ "$model" = central ] && keep=""  # audit=canary replaces the whole audit group
  rm -rf "$OUT/$model-lira/audits/canary"  # an earlier experiment's re-audit (sandbox.audit never overwrites one)
  "$PY" -m sandbox.audit "$OUT/$model-lira" audit=canary $keep  # → $OUT/$model-lira/audits/canary
  code=$?  # as check_runs: 4 (probable DP bug) keeps its record; no record stops the experiment
  is_result "$code" || { echo "re-audit of $model failed (exit $code)" >&2; exit "$code"; }
  [ -f "$OUT/$model-lira/audits/canary/record.json" ] || { echo "re-audit of $model wrote no record" >&2; exit 1; }
done
for model in central fedavgm dp1; do
  echo "== claim cannot-memorize on $model (LiRA + the canary re-audit of one model)"
  "$PY" -m sandbox.claim cannot-memorize "$OUT/$model-lira"  # reads $OUT/$model-lira/audits/* too
  code=$?
  is_result "$code" || { echo "claim check on $model failed (exit $code)" >&2; exit "$code"; }
done
"$PY" -m sandbox.summary "$OUT"
