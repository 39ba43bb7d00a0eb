"""Membership-attack metrics against hand-computed and independently computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from sandbox.audit.metrics import (
    AttackMetrics,
    _allowed_fp,
    _resample_stats,
    attack_metrics,
    choose_threshold,
    nonmembers_needed,
    plot_roc,
    rates_at_threshold,
    split_for_threshold,
    tpr_at_fpr,
    tpr_measurability,
)


def pair_auc(scores, labels) -> float:
    """AUC by counting (member, non-member) pairs: a win counts 1, a tie 1/2."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_tpr_at_fpr(scores, labels, fpr) -> float:
    """Max TPR over every threshold (each score and +inf) whose FPR <= fpr, by counting."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    best = 0.0
    for t in [*np.unique(s), np.inf]:
        if np.sum((s >= t) & ~y) / np.sum(~y) <= fpr:
            best = max(best, np.sum((s >= t) & y) / np.sum(y))
    return best


def gaussian(n_per_class: int, seed: int, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_per_class), np.zeros(n_per_class)]
    return rng.normal(loc=shift * y), y


# --- point estimates ---------------------------------------------------------------------


def test_auc_hand_case():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert pair_auc(scores, labels) == 0.75  # 0.35>0.1, 0.35<0.4, 0.8>both: 3 of 4 pairs
    assert attack_metrics(scores, labels, resamples=10).auc == pytest.approx(0.75)


def test_auc_with_ties_matches_pair_count():
    scores, labels = [1, 2, 2, 3, 1, 2, 3, 3], [1, 1, 1, 1, 0, 0, 0, 1]
    assert attack_metrics(scores, labels, resamples=10).auc == pytest.approx(pair_auc(scores, labels))


def test_tpr_at_fpr_hand_case():
    # Interleaved: members 0.9 0.7 0.5 0.3, non-members 0.8 0.6 0.4 0.2.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    expected = {0.0: 0.25, 0.1: 0.25, 0.25: 0.5, 0.3: 0.5, 0.5: 0.75, 0.74: 0.75, 0.75: 1.0, 1.0: 1.0}
    for fpr, tpr in expected.items():
        assert tpr_at_fpr(scores, labels, fpr) == tpr, fpr


def test_tpr_perfect_and_reversed_separation():
    labels = [1] * 50 + [0] * 50
    perfect = np.r_[np.linspace(1, 2, 50), np.linspace(-2, -1, 50)]
    for fpr in (0.0, 0.001, 0.01, 0.5, 1.0):
        assert tpr_at_fpr(perfect, labels, fpr) == 1.0
    for fpr in (0.0, 0.001, 0.01, 0.5):
        assert tpr_at_fpr(-perfect, labels, fpr) == 0.0
    assert tpr_at_fpr(-perfect, labels, 1.0) == 1.0


def test_fpr_below_one_over_n_is_fpr_zero():
    scores, labels = gaussian(100, seed=3)  # 100 non-members: FPR 0.1% only attainable at 0
    assert tpr_at_fpr(scores, labels, 0.001) == tpr_at_fpr(scores, labels, 0.0)
    assert tpr_at_fpr(scores, labels, 0.001) == brute_tpr_at_fpr(scores, labels, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=30),
    st.sampled_from([0.0, 0.001, 0.1, 1 / 3, 0.5, 0.99, 1.0]),
)
def test_tpr_at_fpr_matches_brute_force(pairs, fpr):
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    if all(labels) or not any(labels):
        return
    assert tpr_at_fpr(scores, labels, fpr) == pytest.approx(brute_tpr_at_fpr(scores, labels, fpr))


# --- the vectorised bootstrap statistic equals sklearn on each resample -------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(2, 40), st.integers(2, 8))
def test_resample_stats_match_sklearn(seed, n_pos, n_neg, n_values):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_values, n_pos + n_neg).astype(float)  # few values: many ties
    y = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    values, codes = np.unique(s, return_inverse=True)
    fprs = (0.0, 0.01, 0.1, 0.5)
    ip, ineg = rng.integers(0, n_pos, (5, n_pos)), rng.integers(0, n_neg, (5, n_neg))
    auc, tpr = _resample_stats(codes[y], codes[~y], len(values), [_allowed_fp(f, n_neg) for f in fprs], ip, ineg)
    for r in range(5):
        rs = np.r_[s[y][ip[r]], s[~y][ineg[r]]]
        ry = np.r_[np.ones(n_pos), np.zeros(n_neg)]
        assert auc[r] == pytest.approx(roc_auc_score(ry, rs))
        for i, f in enumerate(fprs):
            assert tpr[r, i] == pytest.approx(tpr_at_fpr(rs, ry, f))


# --- bootstrap confidence intervals --------------------------------------------------------


def test_ci_contains_point_estimate():
    m = attack_metrics(*gaussian(2000, seed=1))
    assert m.auc_ci[0] < m.auc < m.auc_ci[1]
    assert m.tpr_at_ci[0.01][0] <= m.tpr_at[0.01] <= m.tpr_at_ci[0.01][1]
    assert m.n_members == m.n_nonmembers == 2000


def test_ci_narrows_with_more_samples():
    small, large = attack_metrics(*gaussian(100, seed=2)), attack_metrics(*gaussian(2500, seed=2))
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(large.auc_ci) < width(small.auc_ci) / 3  # ~1/sqrt(25) = 1/5 expected
    assert width(large.tpr_at_ci[0.01]) < width(small.tpr_at_ci[0.01])


def test_ci_reproducible_with_seed():
    data = gaussian(300, seed=4)
    a, b = attack_metrics(*data, seed=7), attack_metrics(*data, seed=7)
    c = attack_metrics(*data, seed=8)
    assert a == b
    assert a.auc_ci != c.auc_ci and a.auc == c.auc


def test_ci_covers_true_auc():
    true_auc = norm.cdf(1 / math.sqrt(2))  # P(X1 > X0), X1 - X0 ~ N(1, 2)
    assert true_auc == pytest.approx(0.7602, abs=1e-4)
    m = attack_metrics(*gaussian(1000, seed=5))  # n = 2000 scores
    assert m.auc_ci[0] < true_auc < m.auc_ci[1]
    # True TPR at FPR 1%: threshold at the 99% quantile of N(0,1), members shifted by 1.
    true_tpr = norm.sf(norm.ppf(0.99) - 1)
    assert m.tpr_at_ci[0.01][0] < true_tpr < m.tpr_at_ci[0.01][1]


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_ci_width_matches_delong(confidence):
    """The percentile interval is about ±z·SE, with SE from DeLong's placement values."""
    scores, labels = gaussian(1000, seed=1)
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).astype(float)  # continuous scores: no ties
    se = math.sqrt(wins.mean(1).var(ddof=1) / len(pos) + wins.mean(0).var(ddof=1) / len(neg))
    m = attack_metrics(scores, labels, confidence=confidence, seed=1)
    expected = 2 * norm.ppf((1 + confidence) / 2) * se
    assert m.auc_ci[1] - m.auc_ci[0] == pytest.approx(expected, rel=0.1)


def test_to_dict_is_json():
    m = attack_metrics(*gaussian(200, seed=6), resamples=50, confidence=0.9)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["auc"] == m.auc and d["auc_ci"] == list(m.auc_ci)
    assert set(d["tpr_at_fpr"]) == set(d["tpr_at_fpr_ci"]) == {"0.001", "0.01"}
    assert d["tpr_at_fpr"]["0.01"] == m.tpr_at[0.01]
    assert (d["n_members"], d["n_nonmembers"]) == (200, 200)
    assert d["bootstrap"]["resamples"] == 50 and d["bootstrap"]["confidence"] == 0.9
    assert isinstance(m, AttackMetrics)


# --- thresholds on one split, counts on another --------------------------------------------


def test_choose_threshold_and_rates_hand_case():
    # Choose split: members 0.9 0.7 0.5, non-members 0.8 0.6 0.1.
    scores, labels = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1], [1, 0, 1, 0, 1, 0]
    assert choose_threshold(scores, labels, fpr=0.0) == 0.9  # TPR 1/3, FPR 0
    assert choose_threshold(scores, labels, fpr=0.4) == 0.7  # TPR 2/3, FPR 1/3
    assert choose_threshold(scores, labels, fpr=1.0) == 0.5  # TPR 1 first at 0.5, not 0.1
    # Eval split, counted at 0.7 (score >= threshold is "member").
    ev_scores, ev_labels = [0.95, 0.7, 0.65, 0.2, 0.75, 0.3], [1, 1, 1, 1, 0, 0]
    assert rates_at_threshold(ev_scores, ev_labels, 0.7) == (2, 4, 1, 2)


def test_choose_threshold_unattainable_is_inf():
    scores, labels = [0.9, 0.5, 0.4], [0, 1, 0]  # a non-member scores highest
    t = choose_threshold(scores, labels, fpr=0.0)
    assert t == math.inf
    assert rates_at_threshold([0.3, 0.8], [1, 0], t) == (0, 1, 0, 1)


def test_split_for_threshold():
    a, b = split_for_threshold(101, fraction=0.3, seed=1)
    assert (len(a), len(b)) == (30, 71)
    assert sorted(np.r_[a, b].tolist()) == list(range(101))
    a2, b2 = split_for_threshold(101, fraction=0.3, seed=1)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(a, split_for_threshold(101, fraction=0.3, seed=2)[0])
    with pytest.raises(ValueError, match="empty split"):
        split_for_threshold(3, fraction=0.1, seed=0)


# --- plot ----------------------------------------------------------------------------------


def test_plot_roc_writes_png(tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    curves = {"weak": gaussian(300, seed=1, shift=0.3), "strong": gaussian(300, seed=1, shift=2.0)}
    target = tmp_path / "plots" / "roc.png"
    for _ in range(2):  # the second call overwrites in place
        assert plot_roc(curves, target, title="test ROC") == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(target).shape[0] > 100
    assert [p.name for p in target.parent.iterdir()] == ["roc.png"]  # no temp file left
    assert plt.get_fignums() == []  # pyplot's global state untouched


# --- input validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([0.1, 0.2], [1, 1], "both classes"),
        ([0.1, 0.2], [0, 0], "both classes"),
        ([0.1, np.nan], [0, 1], "finite"),
        ([0.1, np.inf], [0, 1], "finite"),
        ([0.1, 0.2], [0, 2], "0/1"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
    ],
)
def test_input_validation(scores, labels, message):
    for call in (
        lambda: attack_metrics(scores, labels, resamples=5),
        lambda: tpr_at_fpr(scores, labels, 0.1),
        lambda: choose_threshold(scores, labels, fpr=0.1),
        lambda: rates_at_threshold(scores, labels, 0.5),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_parameter_validation():
    scores, labels = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr(scores, labels, 1.5)
    with pytest.raises(ValueError, match="fpr"):
        attack_metrics(scores, labels, fprs=(-0.1,))
    with pytest.raises(ValueError, match="resamples"):
        attack_metrics(scores, labels, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        attack_metrics(scores, labels, confidence=1.0)
    with pytest.raises(ValueError, match="at least one curve"):
        plot_roc({}, "unused.png", title="x")


@pytest.mark.parametrize("fpr, need", [(0.01, 100), (0.001, 1000), (0.05, 20), (0.3, 4), (1.0, 1)])
def test_nonmembers_needed_for_tpr_at_a_fpr_is_one_over_fpr(fpr, need):
    assert nonmembers_needed(fpr) == need  # 1/0.001 is not exactly 1000 in floating point; still 1000


@pytest.mark.parametrize(
    "n, fpr, ok", [(99, 0.01, False), (100, 0.01, True), (999, 0.001, False), (1000, 0.001, True), (0, 0.01, False)]
)
def test_tpr_measurability_says_how_many_non_members_it_needs(n, fpr, ok):
    info = tpr_measurability(n, fpr)
    assert info["measurable"] is ok and info["n_nonmembers"] == n
    assert info["needs_nonmembers"] == nonmembers_needed(fpr)
    if ok:
        assert info["note"] is None
    else:
        assert info["note"].startswith(f"not measurable: needs ≥ {nonmembers_needed(fpr)} non-members, has {n}")


def test_below_one_over_fpr_tpr_is_read_at_zero_false_positives():
    """Why such a TPR is "not measurable": with 40 non-members, TPR at 1% FPR allows no false positive."""
    scores = np.r_[np.linspace(0, 1, 40), np.linspace(0.5, 1.5, 40)]
    members = np.r_[np.zeros(40, bool), np.ones(40, bool)]
    assert not tpr_measurability(40, 0.01)["measurable"]
    assert tpr_at_fpr(scores, members, 0.01) == tpr_at_fpr(scores, members, 0.0)


@pytest.mark.parametrize("bad", [(-1, 0.01), (1.5, 0.01), (True, 0.01), (100, 0.0), (100, 1.5)])
def test_tpr_measurability_refuses_bad_inputs(bad):
    with pytest.raises(ValueError):
        tpr_measurability(*bad)
