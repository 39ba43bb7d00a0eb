"""Empirical lower bounds on epsilon from the outcome of a membership-inference audit.

Two statistics, each giving the largest epsilon that can be claimed with confidence
1 - alpha; 0.0 means nothing can be claimed.

* ``eps_lower_bound``: many training runs, one canary decision per run (Jagielski, Ullman
  & Oprea 2020, "Auditing Differentially Private Machine Learning: How Private is Private
  SGD?", NeurIPS). For an (eps, delta)-DP mechanism every test S satisfies
  TPR <= e^eps * FPR + delta and, for its complement, TNR <= e^eps * FNR + delta. With
  exact one-sided Clopper-Pearson bounds TPR_lo and FPR_hi (each at level alpha/2, so
  that by a union bound both hold with probability >= 1 - alpha) this gives
      eps >= max(0, log((TPR_lo - delta) / FPR_hi), log((1 - FPR_hi - delta) / (1 - TPR_lo))),
  where 1 - FPR_hi lower-bounds TNR and 1 - TPR_lo upper-bounds FNR. Both forms use the
  same two intervals, so the maximum needs no further correction. Clopper-Pearson gives
  FPR_hi >= 1 - (alpha/2)^(1/n_neg) > 0 even when fp = 0, and TPR_lo <= (alpha/2)^(1/n_pos)
  < 1, so the bound is always finite. It is a 95% bound only when the trials are independent
  (one decision per training run). The harness applies it to many targets of *one* model,
  which are not independent trials, so there it is recorded as a heuristic
  (``audit.eps_lower_bound_kind``) and raises no alarm.

* ``one_run_eps_lower_bound``: one training run with m canaries, each included
  independently with probability 1/2 (Steinke, Nasr & Jagielski 2023, "Privacy Auditing
  with One (1) Training Run", NeurIPS). The auditor guesses membership of r canaries
  (abstaining on m - r) and v guesses are right. Under (eps, 0)-DP the number of correct
  guesses is stochastically dominated by Binomial(r, q), q = e^eps / (1 + e^eps), the
  accuracy of eps-randomized response; with delta > 0 the p-value gains the additive term
  2 m delta max_{1<=i<=v} P[v > Binomial(r, q) >= v - i] / i (their Theorem 3.1 and
  Appendix D). The bound is the largest eps whose p-value is below alpha, found by the
  bisection of their Appendix D code (functions ``p_value_DP_audit``, ``get_eps_audit``).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from scipy import stats

__all__ = ["eps_lower_bound", "one_run_eps_lower_bound"]

_BISECTION_STEPS = 60
_EPS_CEILING = 1000.0  # q rounds to 1.0 well before this, so the p-value is 1 there


def _count(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _level(name: str, value: object, *, closed_at_zero: bool) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not ((0 <= value if closed_at_zero else 0 < value) and value < 1):
        interval = "[0, 1)" if closed_at_zero else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def _cp_lower(k: int, n: int, level: float) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound on p from k of n, at level."""
    return 0.0 if k == 0 else float(stats.beta.ppf(level, k, n - k + 1))


def _cp_upper(k: int, n: int, level: float) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound on p from k of n, at level."""
    return 1.0 if k == n else float(stats.beta.ppf(1 - level, k + 1, n - k))


def _log_ratio(numerator: float, denominator: float) -> float:
    return math.log(numerator / denominator) if numerator > 0 and denominator > 0 else 0.0


def eps_lower_bound(tp: int, n_pos: int, fp: int, n_neg: int, alpha: float = 0.05, delta: float = 0.0) -> float:
    """Largest eps claimable with confidence 1 - alpha from tp of n_pos and fp of n_neg.

    Clopper-Pearson bounds TPR_lo and FPR_hi are one-sided at level alpha/2 each (union
    bound: joint confidence >= 1 - alpha). Returns
    max(0, log((TPR_lo - delta) / FPR_hi), log((1 - FPR_hi - delta) / (1 - TPR_lo))),
    always finite. Jagielski, Ullman & Oprea (2020), Section 3.
    """
    n_pos, n_neg = _count("n_pos", n_pos, 1), _count("n_neg", n_neg, 1)
    tp, fp = _count("tp", tp), _count("fp", fp)
    if tp > n_pos:
        raise ValueError(f"tp must be <= n_pos ({n_pos}), got {tp}")
    if fp > n_neg:
        raise ValueError(f"fp must be <= n_neg ({n_neg}), got {fp}")
    alpha = _level("alpha", alpha, closed_at_zero=False)
    delta = _level("delta", delta, closed_at_zero=True)
    tpr_lo = _cp_lower(tp, n_pos, alpha / 2)
    fpr_hi = _cp_upper(fp, n_neg, alpha / 2)
    direct = _log_ratio(tpr_lo - delta, fpr_hi)
    complement = _log_ratio(1 - fpr_hi - delta, 1 - tpr_lo)
    return max(0.0, direct, complement)


def _one_run_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P-value of >= v correct guesses of r under (eps, delta)-DP (Steinke et al., App. D)."""
    q = 1 / (1 + math.exp(-eps))  # accuracy of eps-randomized response
    p = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta > 0 and v > 0:
        # P[v > Binomial(r, q) >= v - i] for i = 1..v, then the largest average over i.
        below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
        p += 2 * m * delta * float(np.max(below / np.arange(1, v + 1)))
    return min(p, 1.0)


def one_run_eps_lower_bound(m: int, r: int, v: int, delta: float = 0.0, alpha: float = 0.05) -> float:
    """Largest eps claimable with confidence 1 - alpha from v correct of r guesses on m canaries.

    Steinke, Nasr & Jagielski (2023), "Privacy Auditing with One (1) Training Run",
    Theorem 3.1 with the p-value and bisection of their Appendix D code
    (``p_value_DP_audit``, ``get_eps_audit``; their ``p`` is our ``alpha``): hi grows in
    steps of 1 until p_value(hi) >= alpha, then bisection on [0, hi] keeps
    p_value(lo) < alpha and returns lo, the conservative end (60 steps; theirs use 30).
    For delta = 0 this is the eps at which P[Binomial(r, e^eps/(1+e^eps)) >= v] = alpha.
    """
    m = _count("m", m, 1)
    r, v = _count("r", r), _count("v", v)
    if r > m:
        raise ValueError(f"r must be <= m ({m}), got {r}")
    if v > r:
        raise ValueError(f"v must be <= r ({r}), got {v}")
    delta = _level("delta", delta, closed_at_zero=True)
    alpha = _level("alpha", alpha, closed_at_zero=False)

    def below(eps: float) -> bool:
        return _one_run_p_value(m, r, v, eps, delta) < alpha

    lo, hi = 0.0, 1.0
    while below(hi) and hi < _EPS_CEILING:
        hi += 1.0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if below(mid) else (lo, mid)
    return lo
