#!/usr/bin/env bash
# Utility at scale (issue 17): emoji suggestions, federated, by population, at a fixed cohort.
# For each population N (users; workspaces N/50; the columnar corpus from 50,000 users), one Hydra
# sweep of FedAvg(M) without DP, DP-FedAvg at ε = 4 (Poisson q = COHORT/N) and DP-FTRL at ε = 4
# (no sampling: m = the same expected cohort, each user at most once per epoch), 100 rounds each.
# Then plot.py writes utility.png (top-5 against population) and utility.md (the table, and the
# smallest population at which DP-FedAvg keeps ≥ 90% of FedAvg's top-5).
# One command: bash experiments/emoji-at-scale/run.sh [OUT_DIR] [POPULATIONS...]
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-outputs/experiments/emoji-at-scale}
shift || true
POPULATIONS=${*:-10000 30000 100000 300000 1000000}
COHORT=${COHORT:-2000}  # expected sampled users a round (of all users; ~73% of them are training clients)
ROUNDS=${ROUNDS:-100}
MECHANISMS=${MECHANISMS:-none,dpfedavg,dpftrl}  # the sweep's privacy= values (runs 0, 1, 2, ...)
EXTRA=${EXTRA:-}  # more overrides for every run, e.g. "privacy.clipping=adaptive privacy.target_quantile=0.9"
source experiments/common.sh
for n in $POPULATIONS; do
  q=$(python3 -c "print(min(0.5, $COHORT / $n))")
  m=$(python3 -c "print(max(2, round(0.733 * $COHORT if $COHORT / $n <= 0.5 else 0.733 * 0.5 * $n)))")
  OUT="$ROOT/$n"  # run i: the i-th of MECHANISMS
  RUNS=$(seq 0 $(($(echo "$MECHANISMS" | tr -cd , | wc -c))))
  clear_runs $RUNS
  echo "== $n users: q = $q, DP-FTRL m = $m"
  "$PY" -m sandbox -m mode=federated privacy="$MECHANISMS" $EXTRA \
    data.n_users="$n" data.n_workspaces=$((n / 50 > 200 ? n / 50 : 200)) \
    federation.sample_rate="$q" privacy.clients_per_round="$m" federation.rounds="$ROUNDS" federation.eval_every="$ROUNDS" \
    ledger.path="$ROOT/ledger.json" hydra.sweep.dir="$OUT" 'hydra.sweep.subdir=${hydra.job.num}'
  check_runs $? $RUNS
done
"$PY" experiments/emoji-at-scale/plot.py "$ROOT"
