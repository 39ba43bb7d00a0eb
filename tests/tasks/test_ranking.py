"""Recommender metrics: hand-checked cases, sklearn cross-check, ties, exclusion, validation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse
from sklearn.metrics import ndcg_score

from sandbox.tasks import ranking


def _csr(relevant: list, n_items: int) -> sparse.csr_matrix:
    rows = np.repeat(np.arange(len(relevant)), [len(r) for r in relevant])
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant]) if relevant else []
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(relevant), n_items))


# ----------------------------------------------------------------------------- hand-checked


def test_hand_checked_recall_and_ndcg():
    top = np.array(
        [
            [2, 0, 1],  # relevant {0, 3}: one hit at rank 2
            [3, 0, 1],  # relevant {0, 3}: both hits at ranks 1, 2
            [5, 6, 7],  # relevant {7}: one hit at rank 3
            [0, 1, 2],  # relevant {0,1,2,3,4}: 3 hits of 5, k=3
            [4, 5, 6],
        ]
    )  # relevant {0}: no hit
    relevant = [np.array([0, 3]), np.array([3, 0]), np.array([7]), np.arange(5), np.array([0])]
    inv_log2_3 = 1 / math.log2(3)  # discount at rank 2 = 0.6309...
    expected_recall = [1 / 2, 2 / 2, 1 / 1, 3 / 5, 0.0]
    expected_ndcg = [
        inv_log2_3 / (1 + inv_log2_3),  # ≈ 0.38685
        1.0,
        (1 / math.log2(4)) / 1.0,  # = 0.5: hit at rank 3, ideal is one hit at rank 1
        1.0,  # IDCG over min(k=3, |rel|=5) = 3 hits: all three hit
        0.0,
    ]
    assert expected_ndcg[0] == pytest.approx(0.386852807)
    for rel in (relevant, _csr(relevant, 8)):
        np.testing.assert_allclose(ranking.recall_at_k(top, rel), expected_recall)
        np.testing.assert_allclose(ranking.ndcg_at_k(top, rel), expected_ndcg)


def test_recall_denominator_is_relevant_count_not_min_k():
    # 4 relevant items, k=2, both slots hit: standard recall is 2/4 (min(k,|rel|) would give 1).
    top = np.array([[0, 1]])
    assert ranking.recall_at_k(top, [np.array([0, 1, 2, 3])])[0] == 0.5
    assert ranking.ndcg_at_k(top, [np.array([0, 1, 2, 3])])[0] == pytest.approx(1.0)


def test_duplicate_relevant_items_are_counted_once():
    top = np.array([[1, 2]])
    assert ranking.recall_at_k(top, [np.array([1, 1, 5])])[0] == 0.5


def test_padding_minus_one_is_never_a_hit():
    top = np.array([[4, -1, -1]])
    np.testing.assert_allclose(ranking.recall_at_k(top, [np.array([4, 0])]), [0.5])
    np.testing.assert_allclose(ranking.ndcg_at_k(top, [np.array([4, 0])]), [1 / (1 + 1 / math.log2(3))])


# ----------------------------------------------------------------------------- sklearn cross-check


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_and_recall_match_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 40, 30, int(rng.integers(1, 12))
    scores = rng.permuted(np.tile(np.arange(n_items, dtype=float), (n_users, 1)), axis=1)  # distinct
    relevant = [rng.choice(n_items, size=rng.integers(1, 15), replace=False) for _ in range(n_users)]
    top = ranking.top_k_items(scores, k)
    y_true = _csr(relevant, n_items).toarray()

    ours = ranking.ndcg_at_k(top, relevant)
    sk = np.array([ndcg_score(y_true[u : u + 1], scores[u : u + 1], k=k) for u in range(n_users)])
    np.testing.assert_allclose(ours, sk, rtol=1e-12)
    # Also with a score matrix built directly from ``top`` (ranking equals ``top`` exactly).
    built = np.zeros((n_users, n_items))
    np.put_along_axis(built, top, np.arange(k, 0, -1, dtype=float)[None, :] + 0.5, axis=1)
    built += rng.random((n_users, n_items)) * 1e-3  # distinct, but below every top-k score
    np.testing.assert_allclose(
        ours, [ndcg_score(y_true[u : u + 1], built[u : u + 1], k=k) for u in range(n_users)], rtol=1e-12
    )
    assert ranking.evaluate_ranking(scores, relevant, k=k).ndcg == pytest.approx(ndcg_score(y_true, scores, k=k))

    brute = [len(set(top[u].tolist()) & set(relevant[u].tolist())) / len(relevant[u]) for u in range(n_users)]
    np.testing.assert_allclose(ranking.recall_at_k(top, relevant), brute)
    np.testing.assert_allclose(ranking.recall_at_k(top, _csr(relevant, n_items)), brute)


# ----------------------------------------------------------------------------- top-k and ties


def test_top_k_descending_order():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    np.testing.assert_array_equal(ranking.top_k_items(scores, 3), [[1, 3, 2]])


def test_ties_broken_by_lower_item_index():
    scores = np.array(
        [
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [0.0, 5.0, 5.0, 1.0, 5.0],  # three-way tie at the top, only 2 fit
            [2.0, 3.0, 2.0, 2.0, 3.0],
        ]
    )  # tie inside the list and at the cut-off
    np.testing.assert_array_equal(ranking.top_k_items(scores, 2), [[0, 1], [1, 2], [1, 4]])
    np.testing.assert_array_equal(ranking.top_k_items(scores, 3), [[0, 1, 2], [1, 2, 4], [1, 4, 0]])


def test_tie_breaking_at_cutoff_with_many_ties_many_rows():
    # Tied values straddle the k-th place in most rows: argpartition alone would be arbitrary.
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(500, 200)).astype(np.float32)
    for k in (1, 7, 50, 199, 200):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(ranking.top_k_items(scores, k), expected)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int8, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.integers(-3, 3)),
    st.integers(1, 14),
    st.data(),
)
def test_top_k_equals_stable_full_sort_property(scores, k, data):
    excl = data.draw(arrays(np.bool_, scores.shape))
    masked = np.where(excl, np.inf, -scores.astype(float))
    expected = np.argsort(masked, axis=1, kind="stable")
    n_items = scores.shape[1]
    expected = np.pad(expected, ((0, 0), (0, max(0, k - n_items))), constant_values=-1)[:, :k]
    n_ok = (~excl).sum(axis=1)
    expected[np.arange(k)[None, :] >= n_ok[:, None]] = -1
    np.testing.assert_array_equal(ranking.top_k_items(scores, k, exclude=excl), expected)


def test_torch_scores_match_numpy():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((20, 15)).astype(np.float32)
    t = torch.tensor(scores, requires_grad=True)
    np.testing.assert_array_equal(ranking.top_k_items(t, 4), ranking.top_k_items(scores, 4))
    rel = [np.array([0, 1])] * 20
    assert ranking.evaluate_ranking(t, rel, k=4) == ranking.evaluate_ranking(scores, rel, k=4)


def test_integer_scores_and_k_larger_than_n_items():
    top = ranking.top_k_items(np.array([[3, 1, 2]]), 5)
    np.testing.assert_array_equal(top, [[0, 2, 1, -1, -1]])
    assert top.dtype == np.int64


# ----------------------------------------------------------------------------- exclusion


def test_exclusion_removes_training_items_csr_and_bool():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 50, 40, 10
    scores = rng.random((n_users, n_items))
    train = rng.random((n_users, n_items)) < 0.3
    # Make the training items the best-scored ones, so exclusion has to change the lists.
    scores = scores + 10 * train
    unexcluded = ranking.top_k_items(scores, k)
    assert np.take_along_axis(train, unexcluded, axis=1).any()
    for excl in (train, sparse.csr_matrix(train)):
        top = ranking.top_k_items(scores, k, exclude=excl)
        assert not np.take_along_axis(train, top, axis=1).any()
        expected = np.argsort(np.where(train, np.inf, -scores), axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top, expected)


def test_exclusion_changes_metrics_and_ignores_explicit_sparse_zeros():
    scores = np.array([[0.9, 0.8, 0.1, 0.0]])
    relevant = [np.array([2])]
    assert ranking.evaluate_ranking(scores, relevant, k=1).recall == 0.0
    excl = sparse.csr_matrix((np.array([1.0, 1.0, 0.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 4))
    m = ranking.evaluate_ranking(scores, relevant, k=1, exclude=excl)  # item 2 stored as explicit 0
    assert m.recall == 1.0 and m.ndcg == 1.0


def test_exclusion_pads_when_too_few_eligible_items():
    scores = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    excl = np.array([[True, False, True], [False, False, False]])
    np.testing.assert_array_equal(ranking.top_k_items(scores, 2, exclude=excl), [[1, -1], [0, 1]])


# ----------------------------------------------------------------------------- popularity


def test_popularity_baseline_ranks_most_interacted_first():
    # item interaction counts: item0: 1, item1: 4, item2: 0, item3: 2, item4: 2
    train = np.array([[0, 1, 0, 1, 0], [1, 1, 0, 0, 1], [0, 2, 0, 1, 1]])
    pop = ranking.popularity_scores(train, n_users=4)
    assert pop.shape == (4, 5)
    np.testing.assert_array_equal(pop[2], [1, 4, 0, 2, 2])
    np.testing.assert_array_equal(ranking.popularity_scores(sparse.csr_matrix(train), 4), pop)
    top = ranking.top_k_items(pop, 3)
    np.testing.assert_array_equal(top, np.tile([1, 3, 4], (4, 1)))  # 3 before 4: tie, lower index
    # With the user's own training items excluded the next most popular fill in.
    excl = np.zeros((4, 5), dtype=bool)
    excl[0, [1, 3]] = True
    np.testing.assert_array_equal(ranking.top_k_items(pop, 3, exclude=excl)[0], [4, 0, 2])


def test_popularity_is_a_cheap_read_only_view():
    pop = ranking.popularity_scores(sparse.csr_matrix(np.eye(3)), n_users=100_000)
    assert pop.strides[0] == 0 and not pop.flags.writeable


# ----------------------------------------------------------------------------- NaN handling


def test_users_without_relevant_items_are_nan_and_skipped():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.3, 0.2, 0.9]])
    relevant = [np.array([0]), np.array([], dtype=np.int64), np.array([0, 1])]
    rec = ranking.recall_at_k(ranking.top_k_items(scores, 1), relevant)
    assert rec[0] == 1.0 and math.isnan(rec[1]) and rec[2] == 0.0
    assert math.isnan(ranking.ndcg_at_k(ranking.top_k_items(scores, 1), relevant)[1])
    assert ranking.mean_over_users(rec) == (0.5, 2, 1)

    m = ranking.evaluate_ranking(scores, relevant, k=1)
    assert m == ranking.RankingMetrics(recall=0.5, ndcg=0.5, k=1, n_users_evaluated=2, n_users_skipped=1)
    assert ranking.evaluate_ranking(scores, _csr(relevant, 3), k=1) == m
    assert m.to_dict() == {"recall": 0.5, "ndcg": 0.5, "k": 1, "n_users_evaluated": 2, "n_users_skipped": 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.recall = 1.0  # type: ignore[misc]


def test_all_users_skipped_gives_nan_means():
    m = ranking.evaluate_ranking(np.ones((2, 3)), [[], []], k=2)
    assert math.isnan(m.recall) and math.isnan(m.ndcg)
    assert (m.n_users_evaluated, m.n_users_skipped) == (0, 2)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("k", [0, -1, 1.5, True, None])
def test_invalid_k(k):
    with pytest.raises(ValueError, match="k must be"):
        ranking.top_k_items(np.ones((2, 3)), k)
    with pytest.raises(ValueError, match="k must be"):
        ranking.evaluate_ranking(np.ones((2, 3)), [[0], [1]], k=k)


def test_shape_mismatch_messages_name_both_shapes():
    scores = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        ranking.top_k_items(scores, 2, exclude=np.zeros((3, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(3, 4\)"):
        ranking.top_k_items(scores, 2, exclude=sparse.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match=r"\(3, 6\).*\(3, 4\)"):
        ranking.evaluate_ranking(scores, sparse.csr_matrix((3, 6)), k=2)
    with pytest.raises(ValueError, match="2 users.*3 users"):
        ranking.evaluate_ranking(scores, [[0], [1]], k=2)
    with pytest.raises(ValueError, match="2-D"):
        ranking.top_k_items(np.ones(4), 2)


def test_item_indices_out_of_range():
    scores = np.ones((2, 4))
    with pytest.raises(ValueError, match="out of range for n_items=4"):
        ranking.evaluate_ranking(scores, [[0], [4]], k=2)
    with pytest.raises(ValueError, match=">= 0"):
        ranking.recall_at_k(np.array([[0, 1]]), [np.array([-2])])
    with pytest.raises(ValueError, match="out of range for n_items=3"):
        ranking.recall_at_k(np.array([[0, 3]]), sparse.csr_matrix((1, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        ranking.ndcg_at_k(np.array([[0, -2]]), [np.array([0])])


def test_other_invalid_inputs():
    with pytest.raises(ValueError, match="finite"):
        ranking.top_k_items(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match="integers"):
        ranking.recall_at_k(np.array([[0, 1]]), [np.array([0.0, 1.0])])
    with pytest.raises(ValueError, match="dense boolean"):
        ranking.recall_at_k(np.array([[0, 1]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match="repeated item"):
        ranking.recall_at_k(np.array([[1, 1]]), [np.array([1])])
    with pytest.raises(ValueError, match="boolean"):
        ranking.top_k_items(np.ones((1, 2)), 1, exclude=np.array([[0, 1]]))
    with pytest.raises(ValueError, match="non-negative"):
        ranking.popularity_scores(np.array([[1, -1]]), 3)
