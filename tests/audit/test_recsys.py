"""Suggestions-only audits of recommenders: hand-checked scores, thresholds, attribute inference."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.audit.recsys import advantage, attribute_inference, list_hit_scores, shown_matrix, youden_threshold


def _known(rows: list[list[int]], n_items: int) -> np.ndarray:
    out = np.zeros((len(rows), n_items), dtype=bool)
    for u, items in enumerate(rows):
        out[u, items] = True
    return out


def test_list_hit_scores_hand_checked_with_padding_and_unknown_users():
    lists = np.array(
        [
            [0, 2, -1],  # knows {0, 1}: 1 hit / min(3, 2)
            [1, -1, -1],  # knows {1}: 1 / 1
            [3, 4, 0],  # knows nothing: 0
            [-1, -1, -1],  # knows {0}: padding is never a hit (not item 0)
            [0, 1, 4],  # knows {0, 1, 2, 3}: 2 hits / min(3, 4)
            [4, 3, 2],
        ]
    )  # knows {4}, at the end of the item range: 1 / 1
    known = _known([[0, 1], [1], [], [0], [0, 1, 2, 3], [4]], n_items=5)
    np.testing.assert_allclose(list_hit_scores(lists, known), [1 / 2, 1, 0, 0, 2 / 3, 1])


def test_shown_matrix_marks_the_listed_items_and_ignores_padding():
    lists = np.array([[2, 0, -1], [-1, -1, -1], [4, 3, 1]])
    expected = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 1]], dtype=np.float32)
    out = shown_matrix(lists, 5)
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_perfect_separation_has_advantage_one():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.4])
    labels = np.array([False, False, False, True, True, True])
    threshold = youden_threshold(scores, labels)
    assert threshold == pytest.approx(0.35)  # midway between 0.4 (lowest positive) and 0.3
    assert advantage(scores, labels, threshold) == 1.0
    assert advantage(scores, labels, 0.05) == 0.0  # everyone predicted: TPR = FPR = 1
    assert advantage(scores, labels, 0.9) == 0.0  # nobody predicted


def test_partial_separation_hand_computed():
    # descending: 0.8 T, 0.6 T, 0.5 F, 0.3 F, 0.2 T, 0.1 F
    scores = np.array([0.1, 0.5, 0.3, 0.6, 0.2, 0.8])
    labels = np.array([False, False, False, True, True, True])
    # TPR − FPR at ≥ 0.8: 1/3 − 0; ≥ 0.6: 2/3 − 0 (best); ≥ 0.5: 2/3 − 1/3; ≥ 0.3: 2/3 − 2/3;
    # ≥ 0.2: 1 − 2/3; ≥ 0.1: 1 − 1
    assert youden_threshold(scores, labels) == pytest.approx(0.55)  # midway between 0.6 and the next score
    assert advantage(scores, labels, 0.6) == pytest.approx(2 / 3)
    assert advantage(scores, labels, 0.5) == pytest.approx(1 / 3)
    assert advantage(scores, labels, 0.2) == pytest.approx(1 / 3)
    assert advantage(scores, labels, 0.3) == pytest.approx(0.0)
    # the advantage is signed: "attribute if score ≤ 0.5" is worse than chance (TPR 1/3, FPR 1)
    assert advantage(-scores, labels, -0.5) == pytest.approx(1 / 3 - 1)
    with pytest.raises(ValueError, match="boolean"):  # 0/1 integers would index rows, silently wrong
        advantage(scores, labels.astype(int), 0.5)


def _random_lists(rng, n_users: int, n_items: int, k: int) -> np.ndarray:
    return np.argsort(rng.random((n_users, n_items)), axis=1)[:, :k]


AUDIT = {"resamples": 300, "confidence": 0.95, "seed": 0}


def test_lists_independent_of_the_attribute_give_no_advantage():
    rng = np.random.default_rng(0)
    n_items, k = 40, 5
    attr_ref, attr_target = rng.random(300) < 0.3, rng.random(600) < 0.3
    out = attribute_inference(
        _random_lists(rng, 300, n_items, k),
        attr_ref,
        {"members": (_random_lists(rng, 600, n_items, k), attr_target)},
        n_items=n_items,
        **AUDIT,
    )
    assert out["result"] == "measured" and "gap" not in out  # one group: no gap
    m = out["members"]
    assert m["base_rate"] == pytest.approx(attr_target.mean()) and out["base_rate"] == pytest.approx(attr_ref.mean())
    assert (out["n_reference"], m["n"]) == (300, 600)
    lo, hi = m["advantage_ci"]
    assert lo <= 0 <= hi and abs(m["advantage"]) < 0.15
    assert m["auc_ci"][0] <= 0.5 <= m["auc_ci"][1]
    assert out["bootstrap"] == {"resamples": 300, "confidence": 0.95, "stratified": True}


def _revealing(rng, attr, n_items=40, k=5):  # item 0 is shown exactly to users with the attribute, item 1 to the others
    lists = 2 + _random_lists(rng, len(attr), n_items - 2, k)
    lists[:, 0] = np.where(attr, 0, 1)
    return lists


def test_lists_that_reveal_the_attribute_give_advantage_one_and_no_gap_if_everyone_is_revealed():
    rng = np.random.default_rng(1)
    attr_ref, members, others = rng.random(200) < 0.2, rng.random(400) < 0.2, rng.random(300) < 0.2
    out = attribute_inference(
        _revealing(rng, attr_ref),
        attr_ref,
        {"members": (_revealing(rng, members), members), "non_members": (_revealing(rng, others), others)},
        n_items=40,
        **AUDIT,
    )
    assert out["result"] == "measured"
    for group in ("members", "non_members"):
        assert out[group]["auc"] == 1.0 and out[group]["auc_ci"] == pytest.approx([1.0, 1.0])
        assert out[group]["advantage"] == 1.0  # the threshold has a margin: no target falls just below it
        assert out[group]["advantage_ci"] == pytest.approx([1.0, 1.0])
    assert out["gap"] == 0.0 and out["gap_ci"] == pytest.approx(
        [0.0, 0.0]
    )  # the model reveals it for anyone: training adds nothing


def test_a_leak_only_for_members_shows_as_the_gap():
    rng = np.random.default_rng(3)
    attr_ref, members, others = rng.random(300) < 0.3, rng.random(400) < 0.3, rng.random(300) < 0.3
    lists_ref = _revealing(rng, attr_ref)
    lists_ref[rng.random(300) < 0.5] = 2 + _random_lists(rng, 1, 38, 5)  # the reference half-revealed
    out = attribute_inference(
        lists_ref,
        attr_ref,
        {"members": (_revealing(rng, members), members), "non_members": (2 + _random_lists(rng, 300, 38, 5), others)},
        n_items=40,
        **AUDIT,
    )
    assert out["members"]["advantage"] > 0.5 and abs(out["non_members"]["advantage"]) < 0.2
    assert out["gap"] == pytest.approx(out["members"]["advantage"] - out["non_members"]["advantage"])
    assert out["gap_ci"][0] > 0.3


def test_too_few_reference_users_in_a_class_is_reported_not_measured():
    rng = np.random.default_rng(2)
    lists_ref, lists_target = _random_lists(rng, 50, 20, 3), _random_lists(rng, 50, 20, 3)
    attr_target = np.arange(50) % 2 == 0
    four = np.zeros(50, bool)
    four[:4] = True  # 4 < 5 reference users with the attribute
    out = attribute_inference(lists_ref, four, {"members": (lists_target, attr_target)}, n_items=20, **AUDIT)
    assert out["result"] == "too_few" and "members" not in out
    assert out["base_rate"] == 4 / 50 and out["n_reference"] == 50
    # no target with the attribute: nothing to measure either
    out = attribute_inference(
        lists_ref, np.arange(50) % 2 == 0, {"members": (lists_target, np.zeros(50, bool))}, n_items=20, **AUDIT
    )
    assert out["result"] == "too_few"
    # five of each class is enough
    five = np.zeros(50, bool)
    five[:5] = True
    assert (
        attribute_inference(lists_ref, five, {"members": (lists_target, attr_target)}, n_items=20, **AUDIT)["result"]
        == "measured"
    )
