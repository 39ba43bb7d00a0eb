"""Membership-inference attacks against hand-computed and independently computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from sandbox.audit.attacks import (
    label_probability,
    lira_offline,
    lira_online,
    logit_confidence,
    loss_attack,
    mean_by_unit,
    rmia,
    topk_score,
)

# --- per-example statistics ------------------------------------------------------------


def naive_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.astype(np.float64))
    return e / e.sum(axis=1, keepdims=True)


def test_logit_confidence_matches_naive_log_odds():
    rng = np.random.default_rng(0)
    z, y = rng.normal(scale=3, size=(50, 7)), rng.integers(0, 7, size=50)
    p = naive_softmax(z)[np.arange(50), y]
    np.testing.assert_allclose(logit_confidence(z, y), np.log(p / (1 - p)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(label_probability(z, y), p, rtol=1e-12)
    tz, ty = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])  # torch input
    np.testing.assert_allclose(logit_confidence(tz, ty), [2.0, -1.0], rtol=1e-7)


def test_logit_confidence_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]])
    y = np.array([0, 0, 0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        assert not np.all(np.isfinite(np.log(naive_softmax(z)[:, 0])))  # naive overflows
    out = logit_confidence(z, y)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [1e4, -2e4, 0.0], atol=1e-9)
    np.testing.assert_allclose(label_probability(z, y), [1.0, 0.0, 0.5], atol=1e-12)


def test_bad_logits_or_labels_raise():
    with pytest.raises(ValueError, match="labels"):
        logit_confidence(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        logit_confidence(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError, match="C >= 2"):
        label_probability(np.zeros((2, 1)), np.array([0, 0]))


def test_topk_score_hand_case_with_ties():
    # Order by decreasing logit, ties by lower index: classes 1, 2, 4 (all 3.0), 0, 3.
    z = np.tile([1.0, 3.0, 3.0, 0.0, 3.0], (5, 1))
    y = np.array([0, 1, 2, 3, 4])
    np.testing.assert_allclose(topk_score(z, y, 3), [0.0, 1.0, 2 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(topk_score(z, y, 4), [1 / 4, 1.0, 3 / 4, 0.0, 2 / 4])
    with pytest.raises(ValueError, match="k must be"):
        topk_score(z, y, 0)


def test_topk_score_matches_stable_argsort():
    rng = np.random.default_rng(1)
    z, y = rng.integers(0, 4, size=(200, 6)).astype(float), rng.integers(0, 6, size=200)
    order = np.argsort(-z, axis=1, kind="stable")
    rank = np.array([list(row).index(label) for row, label in zip(order, y)])
    np.testing.assert_allclose(topk_score(z, y, 3), np.where(rank < 3, (3 - rank) / 3, 0.0))


def test_mean_by_unit_matches_loop():
    rng = np.random.default_rng(2)
    values, unit = rng.normal(size=300), rng.integers(0, 9, size=300)
    unit[unit == 4] = 5  # unit 4 has no example
    expected = [
        np.mean([v for v, u in zip(values, unit) if u == j]) if j in unit else np.nan for j in range(10)
    ]  # units 4 and 9 are empty
    np.testing.assert_allclose(mean_by_unit(values, unit, 10), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="unit"):
        mean_by_unit(values, unit, 5)


def test_loss_attack_is_the_statistic():
    stat = np.array([0.3, -1.0, 2.0])
    assert loss_attack(stat).tolist() == stat.tolist() and loss_attack(stat) is not stat


# --- LiRA ------------------------------------------------------------------------------

STATS = np.array([[1.0, -0.5, 3.0], [2.0, 0.5, 2.0], [0.0, 1.5, 4.5], [0.5, -1.0, 2.5]])
KEEP = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
TARGET = np.array([0.1, 0.2, 3.9])


def reference_lira(fixed: bool):
    """Independent per-target loop with scipy.stats.norm (paper formulas)."""
    ins = [STATS[KEEP[:, j], j] for j in range(3)]
    outs = [STATS[~KEEP[:, j], j] for j in range(3)]
    sd_in = [np.std(np.concatenate(ins))] * 3 if fixed else [np.std(v) for v in ins]
    sd_out = [np.std(np.concatenate(outs))] * 3 if fixed else [np.std(v) for v in outs]
    online = [
        norm(np.median(i), si).logpdf(x) - norm(np.median(o), so).logpdf(x)
        for x, i, o, si, so in zip(TARGET, ins, outs, sd_in, sd_out)
    ]
    # log(cdf) as log1p(-sf): accurate also where the cdf is close to 1.
    offline = [np.log1p(-norm(np.median(o), so).sf(x)) for x, o, so in zip(TARGET, outs, sd_out)]
    return np.array(online), np.array(offline)


@pytest.mark.parametrize("fixed", [True, False])
def test_lira_tiny_example_matches_scipy(fixed):
    online, offline = reference_lira(fixed)
    kw = dict(fixed_variance=fixed)
    np.testing.assert_allclose(lira_online(TARGET, STATS, KEEP, **kw), online, rtol=1e-10)
    np.testing.assert_allclose(lira_offline(TARGET, STATS, KEEP, **kw), offline, rtol=1e-10)


def test_lira_offline_is_one_sided():
    # Every target has OUT statistics -1, 0, 1. A very low statistic is the least
    # member-like (the two-sided reference would score it like the very high one).
    shadows, keep = np.repeat([[-1.0], [0.0], [1.0]], 3, axis=1), np.zeros((3, 3), bool)
    low, mid, high = lira_offline(np.array([-50.0, 0.0, 50.0]), shadows, keep)
    assert np.isfinite(low) and low < mid < high
    assert mid == pytest.approx(np.log(0.5))


def difficulty_data(seed: int, n: int = 2000, n_shadow: int = 16):
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 3, size=n)
    keep = np.argsort(rng.random((n_shadow, n)), axis=0) < n_shadow // 2  # half IN per target
    shadows = offset + keep + rng.normal(0, 0.5, size=(n_shadow, n))
    member = rng.random(n) < 0.5
    target = offset + member + rng.normal(0, 0.5, size=n)
    return target, shadows, keep, member


@pytest.mark.parametrize("fixed", [True, False])
def test_lira_beats_loss_when_difficulty_varies(fixed):
    target, shadows, keep, member = difficulty_data(3)
    loss_auc = roc_auc_score(member, loss_attack(target))
    on = roc_auc_score(member, lira_online(target, shadows, keep, fixed_variance=fixed))
    off = roc_auc_score(member, lira_offline(target, shadows, keep, fixed_variance=fixed))
    assert loss_auc < 0.65
    assert on > 0.85 and off > 0.85


def test_lira_missing_shadows_and_bad_shapes_raise():
    keep = KEEP.copy()
    keep[:, 1] = True  # target 1 has no OUT shadow
    for attack in (lira_offline, lira_online):
        with pytest.raises(ValueError, match=r"1 of 3 targets have no OUT shadow.*\[1\]"):
            attack(TARGET, STATS, keep)
    keep[:, 1] = False  # now no IN shadow: only the online attack needs one
    with pytest.raises(ValueError, match="1 of 3 targets have no IN shadow"):
        lira_online(TARGET, STATS, keep)
    assert np.all(np.isfinite(lira_offline(TARGET, STATS, keep)))
    with pytest.raises(ValueError, match=r"shadow_stats must have shape \[N, 3\]"):
        lira_online(TARGET, STATS[:, :2], KEEP[:, :2])
    with pytest.raises(ValueError, match="keep must have the shape"):
        lira_offline(TARGET, STATS, KEEP[:3])
    with pytest.raises(ValueError, match="target_stat must be 1-D"):
        lira_offline(TARGET[None], STATS, KEEP)


# --- RMIA ------------------------------------------------------------------------------

# Online: Pr(x) = [0.375, 0.375] -> ratio_x = [2, 2/3]; Pr(z) = [0.25, 0.25, 0.25] ->
# ratio_z = [1, 2, 0.5]. x0 / z = [2, 1, 4]; x1 / z = [2/3, 1/3, 4/3].
HAND = dict(
    target_prob=np.array([0.75, 0.25]),
    shadow_probs=np.array([[0.25, 0.5], [0.5, 0.25]]),
    keep=np.array([[True, False], [False, True]]),
    population_prob=np.array([0.25, 0.5, 0.125]),
    population_shadow_probs=np.array([[0.25, 0.125, 0.25], [0.25, 0.375, 0.25]]),
)


def call_rmia(d, **kw):
    return rmia(
        d["target_prob"],
        d["shadow_probs"],
        d["keep"],
        population_prob=d["population_prob"],
        population_shadow_probs=d["population_shadow_probs"],
        **kw,
    )


@pytest.mark.parametrize(
    "gamma, expected", [(1.0, [1.0, 1 / 3]), (1.5, [2 / 3, 0.0]), (2.0, [2 / 3, 0.0]), (0.5, [1.0, 2 / 3])]
)
def test_rmia_hand_case(gamma, expected):
    np.testing.assert_allclose(call_rmia(HAND, gamma=gamma), expected)


@pytest.mark.parametrize("a", [0.0, 0.4, 1.0])
def test_rmia_offline_hand_formula(a):
    # The OUT shadow of x0 is model 1 (0.5), of x1 model 0 (0.5); z is OUT everywhere.
    pr_x = ((1 + a) * 0.5 + (1 - a)) / 2
    pr_z = ((1 + a) * np.array([0.25, 0.25, 0.25]) + (1 - a)) / 2
    ratio_x, ratio_z = HAND["target_prob"] / pr_x, HAND["population_prob"] / pr_z
    expected = np.mean(ratio_x[:, None] / ratio_z[None, :] >= 1.0, axis=1)
    np.testing.assert_allclose(call_rmia(HAND, offline_a=a), expected)
    if a == 1.0:  # Pr(x) = Pr_OUT(x) = 0.5: ratio_x = [1.5, 0.5] vs ratio_z = [1, 2, 0.5]
        assert expected.tolist() == [2 / 3, 1 / 3]  # (online: [1, 1/3]); 0.5 / 0.5 counts


def random_rmia(seed: int, n: int = 300, m: int = 400, n_shadow: int = 8):
    rng = np.random.default_rng(seed)
    keep = rng.random((n_shadow, n)) < 0.5
    keep[0], keep[1] = True, False  # every target has IN and OUT shadows
    base = rng.beta(2, 2, size=n)
    member = rng.random(n) < 0.5
    d = dict(
        target_prob=np.clip(base + 0.1 * member + rng.normal(0, 0.05, n), 0, 1),
        shadow_probs=np.clip(base + 0.1 * keep + rng.normal(0, 0.05, (n_shadow, n)), 0, 1),
        keep=keep,
        population_prob=rng.beta(2, 2, size=m),
        population_shadow_probs=rng.beta(2, 2, size=(n_shadow, m)),
    )
    return d, member


@pytest.mark.parametrize("offline_a", [None, 0.0, 0.3, 1.0])
def test_rmia_matches_pairwise_reference(offline_a):
    d, _ = random_rmia(4)
    use = ~d["keep"] if offline_a is not None else np.ones_like(d["keep"])
    pr_x = np.array([d["shadow_probs"][use[:, j], j].mean() for j in range(use.shape[1])])
    pr_z = d["population_shadow_probs"].mean(axis=0)
    if offline_a is not None:
        pr_x, pr_z = [((1 + offline_a) * p + (1 - offline_a)) / 2 for p in (pr_x, pr_z)]
    ratio_x = np.maximum(d["target_prob"], 1e-12) / np.maximum(pr_x, 1e-12)
    ratio_z = d["population_prob"] / pr_z
    for gamma in (0.7, 1.0, 2.0):
        expected = np.mean(ratio_x[:, None] / ratio_z[None, :] >= gamma, axis=1)
        np.testing.assert_allclose(call_rmia(d, gamma=gamma, offline_a=offline_a), expected)


def test_rmia_scores_never_grow_with_gamma():
    d, _ = random_rmia(5)
    scores = [call_rmia(d, gamma=g) for g in (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)]
    assert all(np.all(hi >= lo) for hi, lo in zip(scores, scores[1:]))
    assert scores[0].sum() > scores[-1].sum()


def test_rmia_auc_equals_ratio_auc():
    d, member = random_rmia(6)
    ratio_x = d["target_prob"] / d["shadow_probs"].mean(axis=0)
    # z includes the targets' own statistics, so distinct ratio_x get distinct scores.
    d["population_prob"] = np.r_[d["population_prob"], d["target_prob"]]
    d["population_shadow_probs"] = np.c_[d["population_shadow_probs"], d["shadow_probs"]]
    auc = roc_auc_score(member, call_rmia(d))
    assert auc == pytest.approx(roc_auc_score(member, ratio_x), abs=1e-12)
    assert auc > 0.7


def test_rmia_errors():
    with pytest.raises(ValueError, match="gamma"):
        call_rmia(HAND, gamma=0.0)
    with pytest.raises(ValueError, match="offline_a"):
        call_rmia(HAND, offline_a=1.5)
    with pytest.raises(ValueError, match=r"population_shadow_probs must have shape \[2, 3\]"):
        call_rmia({**HAND, "population_shadow_probs": np.ones((3, 3))})
    with pytest.raises(ValueError, match="1 of 2 targets have no OUT shadow"):
        call_rmia({**HAND, "keep": np.array([[True, False], [True, True]])}, offline_a=0.5)
