"""Recommender metrics: top-k lists, recall@k and NDCG@k against held-out relevant items.

A recommender scores every item for every user (``scores`` [n_users, n_items]); the top-k
list of each user is compared with that user's held-out relevant items.

Conventions guaranteed by this module
-------------------------------------
* **Ordering and ties.** ``top_k_items`` returns items in descending score order; equal
  scores are ordered by the *lower item index first*. This holds both inside the list and
  at the cut-off: when several items tie for the k-th place, the lowest-indexed ones are
  kept. The result is therefore exactly ``np.argsort(-scores, kind="stable")[:, :k]``,
  computed with ``np.argpartition`` plus a sort of the k selected items (rows with a tie
  at the cut-off get a vectorised fix-up pass).
* **Exclusion.** Items in ``exclude`` (typically the user's training interactions) never
  appear. When a user has fewer than k eligible items the list is padded with ``-1``
  (also when ``k > n_items``); ``-1`` is never a hit. Metrics accept ``-1`` padding in
  any ``top`` for that reason.
* **Recall@k** is the standard ``|top_k ∩ relevant| / |relevant|`` (not divided by
  ``min(k, |relevant|)``), so a user with more than k relevant items cannot reach 1.
* **NDCG@k** uses binary relevance: ``DCG = Σ_{i<k} rel_i / log2(i + 2)`` and the ideal
  DCG places ``min(k, |relevant|)`` hits at the top, so NDCG reaches 1.
* **Users without relevant items** get ``NaN`` for both metrics; the means
  (``mean_over_users``, ``evaluate_ranking``) skip them and report how many were skipped.
* A relevant item that is also excluded can never be hit but still counts in
  ``|relevant|`` (it is the caller's split that decides whether that can happen).

``relevant`` is either a sequence of integer arrays (one per user; duplicates ignored) or a
scipy.sparse matrix [n_users, n_items] whose non-zero entries are the relevant items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Union

import numpy as np
from scipy import sparse

PAD = -1  # filler in a top-k list when a user has fewer than k eligible items

Relevant = Union[Sequence[Any], Any]  # list of int arrays, or a scipy.sparse matrix


# ----------------------------------------------------------------------------- helpers


def _check_k(k: Any) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _as_scores(scores: Any) -> np.ndarray:
    """numpy float array [n_users, n_items] from a numpy array or a torch tensor."""
    if hasattr(scores, "detach") and hasattr(scores, "cpu"):  # torch.Tensor, without importing torch
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_users, n_items], got shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(f"scores must be numeric (int or float), got dtype {arr.dtype}")
    if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("scores must be finite (found NaN or ±inf)")
    return arr


def _is_sparse(x: Any) -> bool:
    return sparse.issparse(x)


def _exclude_mask_rows_cols(exclude: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of excluded entries, validated against the scores shape."""
    if _is_sparse(exclude):
        if tuple(exclude.shape) != tuple(shape):
            raise ValueError(f"exclude has shape {tuple(exclude.shape)} but scores have shape {tuple(shape)}")
        csr = sparse.csr_matrix(exclude, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        rows = np.repeat(np.arange(shape[0]), np.diff(csr.indptr))
        return rows, csr.indices.astype(np.int64)
    arr = np.asarray(exclude)
    if arr.dtype != np.bool_:
        raise ValueError(f"exclude must be a scipy.sparse matrix or a boolean array, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"exclude has shape {arr.shape} but scores have shape {tuple(shape)}")
    return np.nonzero(arr)


# ----------------------------------------------------------------------------- top-k


def top_k_items(scores: Any, k: int, *, exclude: Any = None) -> np.ndarray:
    """Top-k item indices per user, int64 [n_users, k].

    Descending score; ties broken by lower item index (also at the k-th place), i.e. the
    same as ``np.argsort(-scores, kind="stable")[:, :k]``. Items in ``exclude`` (CSR matrix
    or boolean array [n_users, n_items]) never appear; a user with fewer than k eligible
    items gets ``-1`` in the remaining positions. ``scores`` may be a numpy array or a
    torch tensor and must be finite.
    """
    return _top_k_items(_as_scores(scores), _check_k(k), exclude)


def _top_k_items(s: np.ndarray, k: int, exclude: Any) -> np.ndarray:
    n_users, n_items = s.shape
    n_eligible = np.full(n_users, n_items, dtype=np.int64)
    rows = cols = None
    if exclude is not None:
        rows, cols = _exclude_mask_rows_cols(exclude, s.shape)
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], cols[order]
        n_eligible -= np.bincount(rows, minlength=n_users)
    kk = min(k, n_items)
    out = np.full((n_users, k), PAD, dtype=np.int64)
    if n_users == 0 or kk == 0:
        return out
    # Row blocks of ~1M entries keep the temporaries small and in cache.
    block = max(1, _BLOCK_ENTRIES // n_items)
    for lo in range(0, n_users, block):
        hi = min(lo + block, n_users)
        neg = -s[lo:hi]  # ascending ``neg`` == descending score; a fresh array
        if rows is not None:
            a, b = np.searchsorted(rows, [lo, hi])
            # scores are finite, so excluded items rank after every eligible one
            neg[rows[a:b] - lo, cols[a:b]] = np.inf
        out[lo:hi, :kk] = _top_k_block(neg, kk)
    if exclude is not None or kk < k:
        out[np.arange(k)[None, :] >= n_eligible[:, None]] = PAD
    return out


_BLOCK_ENTRIES = 1 << 20


def _top_k_block(neg: np.ndarray, kk: int) -> np.ndarray:
    """Indices of the kk smallest entries per row, ascending value then ascending index."""
    n_rows, n_items = neg.shape
    if kk < n_items:
        idx = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(neg, idx, axis=1)
        # argpartition picks arbitrarily among items tied for the k-th place; rows where
        # more items share that value than fit are redone keeping the lowest indices.
        thresh = vals.max(axis=1)[:, None]  # the kk-th smallest ``neg`` of each row
        tied = np.flatnonzero(np.count_nonzero(neg <= thresh, axis=1) > kk)
        if tied.size:
            sub = neg[tied]
            t = thresh[tied]
            lt = sub < t
            eq = sub == t
            room = kk - np.count_nonzero(lt, axis=1)[:, None]
            keep = lt | (eq & (np.cumsum(eq, axis=1, dtype=np.int32) <= room))
            fixed = np.nonzero(keep)[1].reshape(tied.size, kk)  # ascending item index per row
            idx[tied] = fixed
            vals[tied] = np.take_along_axis(sub, fixed, axis=1)
    else:
        idx = np.broadcast_to(np.arange(n_items), (n_rows, n_items)).copy()
        vals = neg
    # Sort the kk selected items: primary key score (desc), secondary item index (asc).
    order = np.lexsort((idx, vals), axis=1)
    return np.take_along_axis(idx, order, axis=1)


# ----------------------------------------------------------------------------- relevance


class _Relevance(NamedTuple):
    users: np.ndarray  # int64, deduplicated (user, item) pairs
    items: np.ndarray
    n_relevant: np.ndarray  # int64 [n_users]
    n_items: int | None  # known for sparse input


def _parse_relevant(relevant: Relevant, n_users: int, n_items: int | None = None) -> _Relevance:
    if _is_sparse(relevant):
        if relevant.shape[0] != n_users:
            raise ValueError(f"relevant has shape {tuple(relevant.shape)} but top/scores have {n_users} users")
        if n_items is not None and relevant.shape[1] != n_items:
            raise ValueError(f"relevant has shape {tuple(relevant.shape)} but scores have shape {(n_users, n_items)}")
        csr = sparse.csr_matrix(relevant, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        counts = np.diff(csr.indptr).astype(np.int64)
        users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        return _Relevance(users, csr.indices.astype(np.int64), counts, int(relevant.shape[1]))

    if isinstance(relevant, np.ndarray) and relevant.dtype == np.bool_:
        raise ValueError(
            "relevant must be a list of item-index arrays or a scipy.sparse matrix; "
            "got a dense boolean array (wrap it in scipy.sparse.csr_matrix)"
        )
    try:
        n_given = len(relevant)
    except TypeError:
        raise ValueError(
            f"relevant must be a list of item-index arrays or a scipy.sparse matrix, got {type(relevant).__name__}"
        ) from None
    if n_given != n_users:
        raise ValueError(f"relevant has {n_given} users but top/scores have {n_users} users")

    arrays = [np.asarray(r).reshape(-1) for r in relevant]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    nonempty = [a for a in arrays if a.size]
    if not nonempty:
        z = np.zeros(0, dtype=np.int64)
        return _Relevance(z, z, np.zeros(n_users, dtype=np.int64), n_items)
    flat = np.concatenate(nonempty)
    if flat.dtype.kind not in "iu":
        raise ValueError(f"relevant item indices must be integers, got dtype {flat.dtype}")
    items = flat.astype(np.int64)
    if items.min() < 0:
        raise ValueError(f"relevant item indices must be >= 0, found {int(items.min())}")
    if n_items is not None and items.max() >= n_items:
        raise ValueError(f"relevant item index {int(items.max())} out of range for n_items={n_items}")
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    stride = int(items.max()) + 1
    keys = np.unique(users * stride + items)  # sorted, deduplicated
    users, items = keys // stride, keys % stride
    return _Relevance(users, items, np.bincount(users, minlength=n_users).astype(np.int64), n_items)


def _as_top(top: Any) -> np.ndarray:
    if hasattr(top, "detach") and hasattr(top, "cpu"):
        top = top.detach().cpu().numpy()
    arr = np.asarray(top)
    if arr.ndim != 2:
        raise ValueError(f"top must be 2-D [n_users, k], got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"top must have k >= 1 columns, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"top must hold integer item indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < PAD:
        raise ValueError(f"top item indices must be >= 0 (or -1 for padding), found {int(arr.min())}")
    if arr.shape[1] > 1 and arr.size:
        srt = np.sort(arr, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] != PAD)
        if dup.any():
            row = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(f"top has a repeated item in row {row}: {arr[row].tolist()}")
    return arr


def _hits(top: Any, relevant: Relevant, n_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hits bool [n_users, k], n_relevant int [n_users])."""
    top = _as_top(top)
    rel = _parse_relevant(relevant, top.shape[0], n_items)
    n_items = rel.n_items if n_items is None else n_items
    if n_items is not None and top.size and top.max() >= n_items:
        raise ValueError(f"top item index {int(top.max())} out of range for n_items={n_items}")
    stride = 1 + max(int(rel.items.max()) if rel.items.size else 0, int(top.max()) if top.size else 0, 0)
    keys = np.sort(rel.users * stride + rel.items)
    if keys.size == 0:
        return np.zeros(top.shape, dtype=bool), rel.n_relevant
    q = np.arange(top.shape[0], dtype=np.int64)[:, None] * stride + top
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    hits = (keys[pos] == q) & (top != PAD)
    return hits, rel.n_relevant


def _recall_from_hits(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    out = np.full(hits.shape[0], np.nan)
    ok = n_rel > 0
    out[ok] = hits[ok].sum(axis=1) / n_rel[ok]
    return out


def _ndcg_from_hits(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[j] = DCG of j hits at the top
    out = np.full(hits.shape[0], np.nan)
    ok = n_rel > 0
    out[ok] = (hits[ok] @ discount) / ideal[np.minimum(n_rel[ok], k)]
    return out


# ----------------------------------------------------------------------------- metrics


def recall_at_k(top: Any, relevant: Relevant) -> np.ndarray:
    """Per-user recall ``|top ∩ relevant| / |relevant|`` (float [n_users]; NaN if no relevant item).

    k is ``top.shape[1]``. The denominator is |relevant| (not min(k, |relevant|)).
    ``-1`` entries in ``top`` are padding and never count as hits.
    """
    hits, n_rel = _hits(top, relevant)
    return _recall_from_hits(hits, n_rel)


def ndcg_at_k(top: Any, relevant: Relevant) -> np.ndarray:
    """Per-user binary-relevance NDCG@k (float [n_users]; NaN if no relevant item).

    ``DCG = Σ_{i<k} rel_i / log2(i + 2)``; ``IDCG`` is the DCG of ``min(k, |relevant|)``
    hits in the first positions.
    """
    hits, n_rel = _hits(top, relevant)
    return _ndcg_from_hits(hits, n_rel)


def mean_over_users(values: Any) -> tuple[float, int, int]:
    """(mean over non-NaN users, n_users_evaluated, n_users_skipped); mean is NaN if none."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = ~np.isnan(v)
    n_ok = int(ok.sum())
    mean = float(v[ok].mean()) if n_ok else float("nan")
    return mean, n_ok, int(v.size - n_ok)


def popularity_scores(train_interactions: Any, n_users: int) -> np.ndarray:
    """Popularity baseline: every user scores item j by its global training interaction count.

    ``train_interactions`` is a scipy.sparse matrix or a dense array [n_train_users, n_items]
    of interaction counts (or 0/1 indicators); the count of item j is the column sum. Returns a
    read-only broadcast view float64 [n_users, n_items] (no n_users × n_items allocation).
    """
    if isinstance(n_users, (bool, np.bool_)) or not isinstance(n_users, (int, np.integer)) or n_users < 0:
        raise ValueError(f"n_users must be a non-negative integer, got {n_users!r}")
    if _is_sparse(train_interactions):
        if train_interactions.ndim != 2:
            raise ValueError(f"train_interactions must be 2-D, got shape {train_interactions.shape}")
        csr = sparse.csr_matrix(train_interactions)
        if csr.nnz and csr.data.min() < 0:
            raise ValueError("train_interactions must be non-negative counts")
        counts = np.asarray(csr.sum(axis=0), dtype=np.float64).reshape(-1)
    else:
        if hasattr(train_interactions, "detach") and hasattr(train_interactions, "cpu"):
            train_interactions = train_interactions.detach().cpu().numpy()
        arr = np.asarray(train_interactions)
        if arr.ndim != 2:
            raise ValueError(f"train_interactions must be 2-D [n_train_users, n_items], got shape {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"train_interactions must be numeric, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise ValueError("train_interactions must be non-negative counts")
        counts = arr.sum(axis=0, dtype=np.float64)
    return np.broadcast_to(counts, (int(n_users), counts.size))


@dataclass(frozen=True)
class RankingMetrics:
    """Means over users with at least one relevant item; the others are counted as skipped."""

    recall: float
    ndcg: float
    k: int
    n_users_evaluated: int
    n_users_skipped: int
    per_user_recall: np.ndarray = field(default=None, repr=False, compare=False)  # [n_users], NaN = skipped
    per_user_ndcg: np.ndarray = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("per_user")}


def evaluate_ranking(scores: Any, relevant: Relevant, *, k: int = 10, exclude: Any = None) -> RankingMetrics:
    """Top-k of ``scores`` (minus ``exclude``) against ``relevant``: mean recall@k and NDCG@k."""
    k = _check_k(k)
    s = _as_scores(scores)
    top = _top_k_items(s, k, exclude)
    hits, n_rel = _hits(top, relevant, n_items=s.shape[1])
    per_recall, per_ndcg = _recall_from_hits(hits, n_rel), _ndcg_from_hits(hits, n_rel)
    recall, n_eval, n_skip = mean_over_users(per_recall)
    ndcg, _, _ = mean_over_users(per_ndcg)
    return RankingMetrics(
        recall=recall,
        ndcg=ndcg,
        k=k,
        n_users_evaluated=n_eval,
        n_users_skipped=n_skip,
        per_user_recall=np.asarray(per_recall, dtype=np.float64),
        per_user_ndcg=np.asarray(per_ndcg, dtype=np.float64),
    )
