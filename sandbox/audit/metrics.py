"""Metrics for membership-inference attacks: AUC, TPR at low FPR, bootstrap CIs, ROC plots.

An attack gives each target a score (higher = "more likely a member"); ``is_member`` is the
truth (1 member, 0 non-member). A target is predicted a member when ``score >= threshold``
(scikit-learn's convention). Point estimates come from ``sklearn.metrics``. TPR at a fixed
FPR follows Carlini et al. 2022 ("Membership Inference Attacks From First Principles"): no
interpolation, the largest TPR over ROC points whose FPR is <= the target. With n
non-members the attainable FPRs are 0, 1/n, 2/n, ..., so a target below 1/n (e.g. 0.1%
with fewer than 1000 non-members) can only be met at FPR = 0: the number reported is then
the TPR of thresholds above every non-member score, a much stricter operating point.

Confidence intervals use a stratified percentile bootstrap written in vectorised numpy
(not ``scipy.stats.bootstrap``, whose default BCa needs a jackknife per score): members
and non-members are resampled separately with replacement, keeping their counts, from a
seeded ``numpy.random.Generator``. Each resample is summarised by per-score-value counts,
from which AUC (Mann-Whitney, ties count 1/2) and TPR at FPR are read exactly as sklearn
would compute them on the resampled scores (the tests check this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from sandbox.io import write_atomic

BOOTSTRAP_METHOD = "stratified percentile bootstrap (vectorised numpy)"
# Resamples per vectorised batch: at most 64, and at most _CELLS / distinct scores so each
# (batch, distinct scores) count matrix stays ~16 MB. It shapes the random stream.
_CELLS = 1 << 21


@dataclass(frozen=True)
class AttackMetrics:
    auc: float
    auc_ci: tuple[float, float]
    tpr_at: dict[float, float]
    tpr_at_ci: dict[float, tuple[float, float]]
    n_members: int
    n_nonmembers: int
    resamples: int
    confidence: float

    def to_dict(self) -> dict:
        return {
            "auc": float(self.auc),
            "auc_ci": [float(v) for v in self.auc_ci],
            "tpr_at_fpr": {str(f): float(t) for f, t in self.tpr_at.items()},
            "tpr_at_fpr_ci": {str(f): [float(v) for v in ci] for f, ci in self.tpr_at_ci.items()},
            "n_members": int(self.n_members),
            "n_nonmembers": int(self.n_nonmembers),
            "bootstrap": {
                "resamples": int(self.resamples),
                "confidence": float(self.confidence),
                "method": BOOTSTRAP_METHOD,
            },
        }


def _validate(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(is_member)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and is_member must be 1-D, got shapes {s.shape} and {y.shape}")
    if len(s) != len(y):
        raise ValueError(f"scores and is_member differ in length: {len(s)} vs {len(y)}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be finite: {int(np.sum(~np.isfinite(s)))} are NaN or inf")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("is_member must hold only 0/1 (or booleans)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"both classes must be present: {int(y.sum())} members, {int((~y).sum())} non-members")
    return s, y


def _check_fpr(fpr: float) -> float:
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    return float(fpr)


def tpr_at_fpr(scores, is_member, fpr: float) -> float:
    """Largest TPR over ROC points with FPR <= ``fpr`` (no interpolation; see module docstring)."""
    s, y = _validate(scores, is_member)
    roc_fpr, roc_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(roc_tpr[roc_fpr <= _check_fpr(fpr)].max())  # roc_fpr[0] == 0: never empty


def _allowed_fp(fpr: float, n_neg: int) -> int:
    """Most false positives with FP / n_neg <= fpr, compared as sklearn's fps / fps[-1]."""
    return int(np.flatnonzero(np.arange(n_neg + 1) / n_neg <= fpr).max())


def _resample_stats(
    pos: np.ndarray, neg: np.ndarray, u: int, max_fp: list[int], ip: np.ndarray, ineg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUC (b,) and TPR at each allowed FP count (b, len(max_fp)) for b resamples.

    ``pos``/``neg`` are member/non-member score codes in 0..u-1 (ranks of the distinct
    values); row r of ``ip``/``ineg`` indexes the members/non-members of resample r.
    """
    b = len(ip)
    offset = (np.arange(b) * u)[:, None]

    def counts(idx: np.ndarray) -> np.ndarray:  # (b, u): how often each value is drawn
        return np.bincount((idx + offset).ravel(), minlength=b * u).reshape(b, u)

    cp, cn = counts(pos[ip]), counts(neg[ineg])
    below = np.cumsum(cn, axis=1) - cn  # non-members scoring strictly below each value
    auc = np.sum(cp * (below + 0.5 * cn), axis=1) / (ip.shape[1] * ineg.shape[1])
    # A threshold at each value: TP / FP = counts at or above it (suffix sums).
    tp = np.cumsum(cp[:, ::-1], axis=1)[:, ::-1]
    fp = np.cumsum(cn[:, ::-1], axis=1)[:, ::-1]
    tpr = np.stack([np.where(fp <= k, tp, 0).max(axis=1) for k in max_fp], axis=1)
    return auc, tpr / ip.shape[1]


def _bootstrap(
    s: np.ndarray, y: np.ndarray, fprs: tuple[float, ...], resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified resamples: AUC (resamples,), TPR at each FPR (resamples, len(fprs))."""
    values, codes = np.unique(s, return_inverse=True)
    pos, neg = codes[y], codes[~y]
    max_fp = [_allowed_fp(f, len(neg)) for f in fprs]
    chunk, out = max(1, min(64, _CELLS // len(values))), []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        ip = rng.integers(0, len(pos), size=(b, len(pos)))
        ineg = rng.integers(0, len(neg), size=(b, len(neg)))
        out.append(_resample_stats(pos, neg, len(values), max_fp, ip, ineg))
    return np.concatenate([a for a, _ in out]), np.concatenate([t for _, t in out])


def attack_metrics(
    scores,
    is_member,
    *,
    fprs: tuple[float, ...] = (0.001, 0.01),
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackMetrics:
    """AUC and TPR at each FPR in ``fprs``, each with a stratified percentile bootstrap CI."""
    s, y = _validate(scores, is_member)
    fprs = tuple(_check_fpr(f) for f in fprs)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    boot_auc, boot_tpr = _bootstrap(s, y, fprs, resamples, np.random.default_rng(seed))
    q = [(1 - confidence) / 2, (1 + confidence) / 2]

    def interval(x: np.ndarray) -> tuple[float, float]:
        lo, hi = np.quantile(x, q)
        return float(lo), float(hi)

    return AttackMetrics(
        auc=float(roc_auc_score(y, s)),
        auc_ci=interval(boot_auc),
        tpr_at={f: tpr_at_fpr(s, y, f) for f in fprs},
        tpr_at_ci={f: interval(boot_tpr[:, i]) for i, f in enumerate(fprs)},
        n_members=int(y.sum()),
        n_nonmembers=int((~y).sum()),
        resamples=int(resamples),
        confidence=float(confidence),
    )


def nonmembers_needed(fpr: float) -> int:
    """Non-members needed for TPR at ``fpr`` to be measurable at all: ⌈1/fpr⌉, so that one false
    positive is allowed (below it, TPR at ``fpr`` is read at zero false positives)."""
    if not 0.0 < fpr <= 1.0:
        raise ValueError(f"fpr must lie in (0, 1], got {fpr}")
    return math.ceil(round(1 / fpr, 9))


def tpr_measurability(n_nonmembers: int, fpr: float) -> dict:
    """``{"measurable", "needs_nonmembers", "n_nonmembers", "note"}`` for TPR at ``fpr``."""
    if isinstance(n_nonmembers, bool) or not isinstance(n_nonmembers, (int, np.integer)) or n_nonmembers < 0:
        raise ValueError(f"n_nonmembers must be an integer >= 0, got {n_nonmembers!r}")
    need = nonmembers_needed(fpr)
    ok = int(n_nonmembers) >= need
    note = (
        None
        if ok
        else (
            f"not measurable: needs ≥ {need} non-members, has {int(n_nonmembers)} (it is read at zero false positives)"
        )
    )
    return {"measurable": ok, "needs_nonmembers": need, "n_nonmembers": int(n_nonmembers), "note": note}


def choose_threshold(scores, is_member, *, fpr: float) -> float:
    """The threshold of the largest-TPR ROC point with FPR <= ``fpr`` on this split.

    Among thresholds reaching that TPR the highest (fewest false positives) is taken. It may
    be ``inf`` (predict nobody) when no finite threshold meets the FPR target. Choose it on
    one split and count with :func:`rates_at_threshold` on another, never the same one.
    """
    s, y = _validate(scores, is_member)
    roc_fpr, roc_tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    tpr = np.where(roc_fpr <= _check_fpr(fpr), roc_tpr, -1.0)
    return float(thresholds[int(np.argmax(tpr))])  # argmax: first = highest threshold


def rates_at_threshold(scores, is_member, threshold: float) -> tuple[int, int, int, int]:
    """(true positives, members, false positives, non-members) predicting ``score >= threshold``."""
    s, y = _validate(scores, is_member)
    hit = s >= threshold
    return int(np.sum(hit & y)), int(y.sum()), int(np.sum(hit & ~y)), int((~y).sum())


def split_for_threshold(n: int, *, fraction: float = 0.5, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted index arrays (choose, eval) covering range(n); a seeded random split.

    Not stratified: with few members or non-members one side may lack a class, which
    :func:`choose_threshold` / :func:`rates_at_threshold` then reject.
    """
    n_choose = int(round(fraction * n))
    if not 0 < n_choose < n:
        raise ValueError(f"fraction={fraction} of n={n} leaves an empty split")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_choose]), np.sort(perm[n_choose:])


def plot_roc(curves: dict[str, tuple], path, *, title: str) -> Path:
    """Log-log ROC curves (AUC in the legend) saved atomically as PNG; returns the path.

    Axes span [lo, 1] with lo = min(1e-4, 1 / largest non-member count); FPR/TPR of 0
    are drawn at lo, since a log axis cannot show 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_roc needs at least one curve")
    data = {name: _validate(s, y) for name, (s, y) in curves.items()}
    lo = min(1e-4, 1.0 / max(int((~y).sum()) for _, y in data.values()))
    fig = Figure(figsize=(5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, (s, y) in data.items():
        roc_fpr, roc_tpr, _ = roc_curve(y, s)
        ax.plot(np.maximum(roc_fpr, lo), np.maximum(roc_tpr, lo), label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([lo, 1], [lo, 1], "k--", lw=1, label="chance")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, 1),
        ylim=(lo, 1),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    ax.legend(loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        fig.clear()  # never registered with pyplot, so nothing else holds it
    return path
