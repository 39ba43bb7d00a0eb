"""Tests for sandbox.audit.bounds against independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sandbox.audit.bounds import eps_lower_bound, one_run_eps_lower_bound


# ---------------------------------------------------------------- independent references
def cp_bounds(tp: int, n_pos: int, fp: int, n_neg: int, alpha: float) -> tuple[float, float]:
    """TPR lower / FPR upper one-sided exact bounds at alpha/2 each, via scipy.stats.binomtest."""
    cl = 1 - alpha / 2
    tpr_lo = stats.binomtest(tp, n_pos, alternative="greater").proportion_ci(cl, method="exact").low
    fpr_hi = stats.binomtest(fp, n_neg, alternative="less").proportion_ci(cl, method="exact").high
    return tpr_lo, fpr_hi


def logit(q: float) -> float:
    return math.log(q / (1 - q))


def binomial_tail_eps(r: int, v: int, alpha: float) -> float:
    """delta = 0 one-run bound: bisection on q for P[Binomial(r, q) >= v] = alpha."""
    lo, hi = 0.5, 1.0
    if stats.binom.sf(v - 1, r, lo) >= alpha:
        return 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stats.binom.sf(v - 1, r, mid) < alpha else (lo, mid)
    return logit(lo)


def appendix_d_eps(m: int, r: int, v: int, delta: float, p: float) -> float:
    """Loop form of the Steinke, Nasr & Jagielski (2023) Appendix D p-value and bisection."""

    def p_value(eps: float) -> float:
        q = 1 / (1 + math.exp(-eps))
        tail = stats.binom.sf(v - 1, r, q)
        worst, acc = 0.0, 0.0
        for i in range(1, v + 1):
            acc += stats.binom.pmf(v - i, r, q)
            worst = max(worst, acc / i)
        return min(tail + worst * delta * 2 * m, 1.0)

    lo, hi = 0.0, 1.0
    while p_value(hi) < p:
        hi += 1
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(mid) < p else (lo, mid)
    return lo


# ---------------------------------------------------------------- eps_lower_bound
@pytest.mark.parametrize(
    ("tp", "n_pos", "fp", "n_neg", "alpha"),
    [(90, 100, 10, 100, 0.05), (40, 50, 3, 60, 0.1), (700, 1000, 50, 1000, 0.01), (9, 10, 1, 10, 0.05)],
)
def test_eps_lower_bound_matches_clopper_pearson_by_hand(tp, n_pos, fp, n_neg, alpha):
    tpr_lo, fpr_hi = cp_bounds(tp, n_pos, fp, n_neg, alpha)
    expected = max(0.0, math.log(tpr_lo / fpr_hi), math.log((1 - fpr_hi) / (1 - tpr_lo)))
    assert expected > 0
    assert eps_lower_bound(tp, n_pos, fp, n_neg, alpha) == pytest.approx(expected, rel=1e-9)


def test_eps_lower_bound_complement_form_wins_when_fnr_is_small():
    # TPR = 0.99 but FPR = 0.5: the direct test gives ~log 2, the complement TNR/FNR ~log 50.
    tpr_lo, fpr_hi = cp_bounds(990, 1000, 500, 1000, 0.05)
    complement = math.log((1 - fpr_hi) / (1 - tpr_lo))
    assert complement > math.log(tpr_lo / fpr_hi) + 1
    assert eps_lower_bound(990, 1000, 500, 1000) == pytest.approx(complement, rel=1e-9)


def test_eps_lower_bound_perfect_attack_1000_trials_closed_form():
    # Jagielski et al. (2020) setting: 1000 members, 1000 non-members, no errors. Closed forms:
    # TPR_lo = (alpha/2)^(1/n), FPR_hi = 1 - (alpha/2)^(1/n); both forms coincide.
    a = 0.05 / 2
    tpr_lo, fpr_hi = a ** (1 / 1000), 1 - a ** (1 / 1000)
    expected = math.log(tpr_lo / fpr_hi)
    got = eps_lower_bound(1000, 1000, 0, 1000)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(5.6006, abs=1e-3)


def test_eps_lower_bound_fp_zero_uses_closed_form_fpr_upper():
    a = 0.05 / 2
    fpr_hi = 1 - a ** (1 / 200)
    tpr_lo, _ = cp_bounds(80, 100, 0, 200, 0.05)
    assert eps_lower_bound(80, 100, 0, 200) == pytest.approx(math.log(tpr_lo / fpr_hi), rel=1e-9)


def test_eps_lower_bound_monotone_in_tp_and_fp():
    by_tp = [eps_lower_bound(tp, 500, 20, 500) for tp in range(100, 501, 50)]
    assert all(b > a for a, b in zip(by_tp, by_tp[1:]))
    by_fp = [eps_lower_bound(300, 500, fp, 500) for fp in range(0, 101, 10)]
    assert all(b < a for a, b in zip(by_fp, by_fp[1:]))


@pytest.mark.parametrize(
    ("tp", "n_pos", "fp", "n_neg"),
    [(500, 1000, 500, 1000), (30, 100, 60, 200), (0, 10, 0, 10), (10, 10, 10, 10)],
)
def test_eps_lower_bound_zero_for_random_guessing(tp, n_pos, fp, n_neg):
    assert eps_lower_bound(tp, n_pos, fp, n_neg) == 0.0


@pytest.mark.parametrize(("tp", "fp"), [(90, 10), (60, 5), (99, 50), (55, 45), (100, 30)])
def test_eps_lower_bound_below_point_estimates(tp, fp):
    # The bound takes the larger of the two tests, so it is below the larger point estimate;
    # it need not be below log(TPR/FPR) alone (see the complement test above).
    n = 100
    tpr, fpr = tp / n, fp / n
    direct = math.log(tpr / fpr)
    complement = math.log((1 - fpr) / (1 - tpr)) if tpr < 1 else math.inf
    assert eps_lower_bound(tp, n, fp, n) < max(direct, complement)


def test_eps_lower_bound_delta_shrinks_the_bound():
    base = eps_lower_bound(900, 1000, 20, 1000)
    tpr_lo, fpr_hi = cp_bounds(900, 1000, 20, 1000, 0.05)
    delta = 0.1
    expected = max(math.log((tpr_lo - delta) / fpr_hi), math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    got = eps_lower_bound(900, 1000, 20, 1000, delta=delta)
    assert 0 < got < base
    assert got == pytest.approx(expected, rel=1e-9)
    assert eps_lower_bound(5, 100, 0, 100, delta=0.2) == 0.0  # TPR_lo <= delta


def test_eps_lower_bound_more_confidence_smaller_bound():
    assert eps_lower_bound(90, 100, 10, 100, alpha=0.01) < eps_lower_bound(90, 100, 10, 100, alpha=0.2)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(tp=-1, n_pos=10, fp=0, n_neg=10), "tp"),
        (dict(tp=11, n_pos=10, fp=0, n_neg=10), "tp"),
        (dict(tp=1.5, n_pos=10, fp=0, n_neg=10), "tp"),
        (dict(tp=1, n_pos=0, fp=0, n_neg=10), "n_pos"),
        (dict(tp=1, n_pos=10, fp=-2, n_neg=10), "fp"),
        (dict(tp=1, n_pos=10, fp=11, n_neg=10), "fp"),
        (dict(tp=1, n_pos=10, fp=0, n_neg=0), "n_neg"),
        (dict(tp=1, n_pos=10, fp=0, n_neg=10, alpha=0.0), "alpha"),
        (dict(tp=1, n_pos=10, fp=0, n_neg=10, alpha=1.0), "alpha"),
        (dict(tp=1, n_pos=10, fp=0, n_neg=10, delta=-0.1), "delta"),
        (dict(tp=1, n_pos=10, fp=0, n_neg=10, delta=1.0), "delta"),
        (dict(tp=True, n_pos=10, fp=0, n_neg=10), "tp"),
    ],
)
def test_eps_lower_bound_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        eps_lower_bound(**kwargs)


def test_eps_lower_bound_accepts_numpy_integers():
    assert eps_lower_bound(np.int64(90), 100, np.int32(10), 100) == eps_lower_bound(90, 100, 10, 100)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.floats(1e-6, 0.5),
    st.floats(0.0, 0.5),
)
def test_eps_lower_bound_is_finite_and_nonnegative(pos, neg, alpha, delta):
    (tp, n_pos), (fp, n_neg) = pos, neg
    eps = eps_lower_bound(tp, n_pos, fp, n_neg, alpha, delta)
    assert math.isfinite(eps) and eps >= 0
    assert eps <= eps_lower_bound(n_pos, n_pos, 0, n_neg, alpha, delta) + 1e-12  # perfect attack is max


# ---------------------------------------------------------------- one_run_eps_lower_bound
@pytest.mark.parametrize(("r", "v", "alpha"), [(100, 80, 0.05), (1000, 700, 0.05), (500, 490, 0.01), (40, 30, 0.1)])
def test_one_run_delta_zero_is_binomial_tail(r, v, alpha):
    expected = binomial_tail_eps(r, v, alpha)
    assert expected > 0
    assert one_run_eps_lower_bound(2 * r, r, v, 0.0, alpha) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("r", [10, 100, 1000, 10_000])
def test_one_run_perfect_guessing_closed_form(r):
    # delta = 0, v = r: P[Binomial(r, q) >= r] = q^r = alpha  =>  eps = logit(alpha^(1/r)).
    assert one_run_eps_lower_bound(r, r, r) == pytest.approx(logit(0.05 ** (1 / r)), abs=1e-8)


def test_one_run_perfect_guessing_grows_with_r():
    for delta in (0.0, 1e-5):
        bounds = [one_run_eps_lower_bound(10_000, r, r, delta) for r in (10, 100, 1000, 5000)]
        assert all(b > a for a, b in zip(bounds, bounds[1:])), (delta, bounds)


@pytest.mark.parametrize(("m", "r", "delta"), [(1000, 1000, 0.0), (1000, 100, 1e-5), (50, 10, 0.0), (10, 0, 0.0)])
def test_one_run_chance_accuracy_gives_zero(m, r, delta):
    assert one_run_eps_lower_bound(m, r, r // 2, delta) == 0.0


@pytest.mark.parametrize(
    ("m", "r", "v", "delta", "alpha"),
    [
        (1000, 100, 100, 1e-5, 0.05),
        (1000, 600, 600, 1e-5, 0.05),
        (5000, 400, 380, 1e-5, 0.05),
        (200, 150, 140, 1e-4, 0.1),
    ],
)
def test_one_run_with_delta_matches_appendix_d_loop(m, r, v, delta, alpha):
    expected = appendix_d_eps(m, r, v, delta, alpha)
    got = one_run_eps_lower_bound(m, r, v, delta, alpha)
    assert expected > 0
    assert got == pytest.approx(expected, abs=1e-6)
    assert got < one_run_eps_lower_bound(m, r, v, 0.0, alpha)  # delta > 0 only costs


def test_one_run_delta_cost_grows_with_m():
    # The delta term is 2 m delta (...): more canaries in the run, same guesses, weaker bound.
    small, large = (one_run_eps_lower_bound(m, 500, 500, 1e-5) for m in (1000, 100_000))
    assert 0 < large < small


def test_one_run_monte_carlo_randomized_response():
    # Guesses from eps0-randomized response, which is exactly eps0-DP: the 95% bound must
    # rarely exceed eps0, and with 2000 guesses it should recover most of it.
    eps0, r, trials = 2.0, 2000, 50
    q = math.exp(eps0) / (1 + math.exp(eps0))
    rng = np.random.default_rng(20230515)
    bounds = np.array([one_run_eps_lower_bound(r, r, int(rng.binomial(r, q))) for _ in range(trials)])
    assert np.mean(bounds <= eps0) >= 0.9
    assert bounds.mean() > 0.5 * eps0


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0, 0, 0), "m"),
        ((10, 11, 0), "r"),
        ((10, -1, 0), "r"),
        ((10, 5, 6), "v"),
        ((10, 5, -1), "v"),
        ((10, 5, 2.0), "v"),
        ((10, 5, 3, -1e-3), "delta"),
        ((10, 5, 3, 1.0), "delta"),
        ((10, 5, 3, 0.0, 0.0), "alpha"),
        ((10, 5, 3, 0.0, 1.5), "alpha"),
    ],
)
def test_one_run_validation(args, name):
    with pytest.raises(ValueError, match=name):
        one_run_eps_lower_bound(*args)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda m: st.integers(0, m).flatmap(lambda r: st.tuples(st.just(m), st.just(r), st.integers(0, r)))
    ),
    st.sampled_from([0.0, 1e-6, 1e-3]),
    st.floats(0.01, 0.5),
)
def test_one_run_is_finite_nonnegative_and_below_perfect(mrv, delta, alpha):
    m, r, v = mrv
    eps = one_run_eps_lower_bound(m, r, v, delta, alpha)
    assert math.isfinite(eps) and eps >= 0
    assert eps <= one_run_eps_lower_bound(m, r, r, delta, alpha) + 1e-9
