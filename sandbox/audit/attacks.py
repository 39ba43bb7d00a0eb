"""Membership-inference attacks as pure, vectorised numpy functions of model statistics.

No models are trained or queried here: callers pass per-target statistics computed from
the target model and from N shadow (reference) models. Every score follows one
convention: higher = "more likely a member". Shapes: n targets (examples or users), C
classes, N shadow models, m population (reference) points. ``keep[i, j]`` is True when
target j was IN the training set of shadow model i.

* LOSS / confidence threshold: Yeom, Giacomelli, Fredrikson & Jha 2018, "Privacy Risk in
  Machine Learning: Analyzing the Connection to Overfitting" (CSF).
* LiRA: Carlini, Chien, Nasr, Song, Terzis & Tramer 2022, "Membership Inference Attacks
  From First Principles" (IEEE S&P); reference code tensorflow/privacy,
  ``research/mi_lira_2021`` (``score.py`` for the statistic, ``plot.py`` for
  ``generate_ours`` / ``generate_ours_offline``).
* RMIA: Zarifzadeh, Liu, Nguyen & Shokri 2024, "Low-Cost High-Power Membership Inference
  Attacks" (ICML); reference code privacytrustlab/ml_privacy_meter (``run_rmia``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

__all__ = [
    "logit_confidence",
    "label_probability",
    "topk_score",
    "mean_by_unit",
    "loss_attack",
    "lira_offline",
    "lira_online",
    "rmia",
]

_PROB_FLOOR = 1e-12  # RMIA: probabilities are clipped to at least this before dividing


def _numpy(x) -> np.ndarray:
    """A numpy array from a numpy array, a sequence or a (possibly CUDA) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z, y = _numpy(logits).astype(np.float64), _numpy(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape [n, C] with C >= 2, got {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape [{z.shape[0]}], got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or np.any((y < 0) | (y >= z.shape[1])):
        raise ValueError(f"labels must be integers in [0, {z.shape[1]})")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    return z, y.astype(np.intp)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    """Row-wise log(sum(exp(z))) with the max shifted out; rows hold a finite value."""
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.sum(np.exp(z - top), axis=1, keepdims=True)))[:, 0]


def logit_confidence(logits, labels) -> np.ndarray:
    """LiRA's logit-scaled confidence log(p_y) - log(sum_{j != y} p_j), shape [n].

    Carlini et al. 2022, Section 4.3 and ``score.py``; equals log(p_y / (1 - p_y)) but is
    computed as z_y - logsumexp(z_{j != y}) so that it never overflows or rounds to +-inf
    (the reference code instead adds 1e-45 inside both logs). logits [n, C], labels [n].
    """
    z, y = _logits_labels(logits, labels)
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - _logsumexp(others)


def label_probability(logits, labels) -> np.ndarray:
    """Softmax probability of the true label, exp(z_y - logsumexp(z)), shape [n]."""
    z, y = _logits_labels(logits, labels)
    return np.exp(z[np.arange(len(y)), y] - _logsumexp(z))


def topk_score(logits, labels, k: int) -> np.ndarray:
    """What a suggestions-only attacker sees: (k - rank) / k if rank < k, else 0.0; [n].

    rank is the 0-based position of the true label among the classes ordered by
    decreasing logit, ties broken by lower class index (a stable argsort of -logits).
    Note ``torch.topk`` does not promise this tie order. logits [n, C], labels [n].
    """
    z, y = _logits_labels(logits, labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= z.shape[1]:
        raise ValueError(f"k must be an integer in [1, {z.shape[1]}], got {k!r}")
    zy = z[np.arange(len(y)), y][:, None]
    before = np.arange(z.shape[1])[None, :] < y[:, None]
    rank = np.sum(z > zy, axis=1) + np.sum((z == zy) & before, axis=1)
    return np.where(rank < k, (k - rank) / k, 0.0)


def mean_by_unit(values, unit, n_units: int) -> np.ndarray:
    """Mean of per-example ``values`` [n] per unit id ``unit`` [n] in [0, n_units); [n_units].

    Units without any example get NaN. Used for user-level statistics (a user's records).
    """
    v, u = _numpy(values).astype(np.float64), _numpy(unit)
    if v.ndim != 1 or u.shape != v.shape:
        raise ValueError(f"values and unit must be 1-D of equal length, got {v.shape}, {u.shape}")
    if not np.issubdtype(u.dtype, np.integer) or np.any((u < 0) | (u >= n_units)):
        raise ValueError(f"unit must hold integers in [0, {n_units})")
    count = np.bincount(u, minlength=n_units)
    total = np.bincount(u, weights=v, minlength=n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _vector(name: str, x) -> np.ndarray:
    a = _numpy(x).astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite: {int(np.sum(~np.isfinite(a)))} are not")
    return a


def loss_attack(target_stat) -> np.ndarray:
    """Yeom et al. 2018 threshold attack: the score is the target's own statistic [n].

    Pass a confidence-like statistic (higher = better fit, e.g. ``logit_confidence`` or
    minus the loss); thresholding it is the LOSS attack. No shadow models involved.
    """
    return _vector("target_stat", target_stat).copy()


def _shadow_inputs(target_stat, shadow_stats, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = _vector("target_stat", target_stat)
    s, k = _numpy(shadow_stats).astype(np.float64), _numpy(keep)
    if s.ndim != 2 or s.shape[1] != len(x) or s.shape[0] < 1:
        raise ValueError(f"shadow_stats must have shape [N, {len(x)}], N >= 1, got {s.shape}")
    if k.shape != s.shape:
        raise ValueError(f"keep must have the shape of shadow_stats {s.shape}, got {k.shape}")
    if k.dtype != bool and not np.all((k == 0) | (k == 1)):
        raise ValueError("keep must be boolean (or 0/1)")
    if not np.all(np.isfinite(s)):
        raise ValueError("shadow_stats must be finite")
    return x, s, k.astype(bool)


def _require(has: np.ndarray, what: str) -> None:
    missing = np.flatnonzero(~has)
    if len(missing):
        raise ValueError(
            f"{len(missing)} of {len(has)} targets have no {what} shadow model (first indices: {missing[:5].tolist()})"
        )


def _gaussian_fit(s: np.ndarray, mask: np.ndarray, fixed_variance: bool, what: str):
    """Per-target median of the masked shadow statistics and the std (LiRA, ``plot.py``)."""
    count = mask.sum(axis=0)
    _require(count > 0, what)
    ordered = np.sort(np.where(mask, s, np.inf), axis=0)  # the masked values come first
    cols = np.arange(s.shape[1])
    mu = 0.5 * (ordered[(count - 1) // 2, cols] + ordered[count // 2, cols])
    if fixed_variance:
        sigma = np.full(s.shape[1], np.std(s[mask]))
    else:
        mean = np.sum(np.where(mask, s, 0.0), axis=0) / count
        sigma = np.sqrt(np.sum(np.where(mask, s - mean, 0.0) ** 2, axis=0) / count)
    if np.any(sigma <= 0):
        raise ValueError(
            f"{int(np.sum(sigma <= 0))} targets have zero std of {what} shadow "
            f"statistics; use fixed_variance=True or more shadow models"
        )
    return mu, sigma


def lira_offline(target_stat, shadow_stats, keep, *, fixed_variance: bool = True) -> np.ndarray:
    """Offline LiRA (Carlini et al. 2022, Algorithm 1, offline): log Phi((x - mu_out) / sigma_out).

    target_stat [n], shadow_stats [N, n], keep [N, n] bool. mu_out = per-target median of
    the OUT shadow statistics; sigma_out = per-target std, or with ``fixed_variance`` one
    std over all OUT values pooled (as in ``generate_ours_offline``; better with few shadow
    models). The score is the log of the probability that an OUT model gives a *smaller*
    statistic than observed: the paper's one-sided test. The reference code's
    ``generate_ours_offline`` is two-sided instead (it ranks by -logpdf under the OUT
    Gaussian, so unusually *low* statistics also look like members); we follow the paper.
    Unlike the reference, all OUT shadows of each target are used (no truncation to the
    smallest count). Raises ValueError when some target has no OUT shadow.
    """
    x, s, k = _shadow_inputs(target_stat, shadow_stats, keep)
    mu_out, sd_out = _gaussian_fit(s, ~k, fixed_variance, "OUT")
    return norm.logcdf(x, mu_out, sd_out)


def lira_online(target_stat, shadow_stats, keep, *, fixed_variance: bool = True) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022): log N(x; mu_in, sigma_in) - log N(x; mu_out, sigma_out).

    Shapes and estimates as in :func:`lira_offline`, for IN and OUT shadows separately
    (``generate_ours`` in the reference ``plot.py``). With ``fixed_variance`` the reference
    code uses the IN std for both Gaussians (``std_out = np.std(dat_in)``, apparently a
    slip); here sigma_out is the pooled std of the OUT values. Raises ValueError when some
    target has no IN or no OUT shadow.
    """
    x, s, k = _shadow_inputs(target_stat, shadow_stats, keep)
    mu_in, sd_in = _gaussian_fit(s, k, fixed_variance, "IN")
    mu_out, sd_out = _gaussian_fit(s, ~k, fixed_variance, "OUT")
    return norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out)


def _pr_reference(shadow: np.ndarray, use: np.ndarray, offline_a: float | None) -> np.ndarray:
    """Pr(.) as the mean over the ``use``d shadow models, with RMIA's offline correction."""
    mean = np.sum(np.where(use, shadow, 0.0), axis=0) / np.sum(use, axis=0)
    if offline_a is not None:
        mean = 0.5 * ((1 + offline_a) * mean + (1 - offline_a))
    return np.maximum(mean, _PROB_FLOOR)


def _population(prob, shadow_probs, n_shadow: int) -> tuple[np.ndarray, np.ndarray]:
    pz = _vector("population_prob", prob)
    sz = _numpy(shadow_probs).astype(np.float64)
    if len(pz) == 0 or sz.shape != (n_shadow, len(pz)):
        raise ValueError(
            f"population_shadow_probs must have shape [{n_shadow}, {len(pz)}] "
            f"with m >= 1 population points, got {sz.shape}"
        )
    if not np.all(np.isfinite(sz)):
        raise ValueError("population_shadow_probs must be finite")
    return pz, sz


def rmia(
    target_prob,
    shadow_probs,
    keep,
    *,
    population_prob,
    population_shadow_probs,
    gamma: float = 1.0,
    offline_a: float | None = None,
) -> np.ndarray:
    """RMIA (Zarifzadeh et al. 2024): fraction of population z with ratio_x / ratio_z >= gamma.

    target_prob [n] = Pr(x|theta) (a positive statistic, e.g. label probability, averaged per
    user); shadow_probs [N, n] and keep [N, n] for the reference models; population_prob
    [m] = Pr(z|theta) and population_shadow_probs [N, m] for reference points z that are
    in no training set. ratio_x = Pr(x|theta) / Pr(x), ratio_z = Pr(z|theta) / Pr(z).
    Online (``offline_a=None``): Pr(x) and Pr(z) are means over all N shadows. Offline:
    Pr(x) uses only the OUT shadows of x with the paper's linear approximation
    Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2; as in the reference ``run_rmia`` the same
    approximation is applied to Pr(z) (all shadows are OUT for z), keeping both ratios on
    one scale. Probabilities are clipped to >= 1e-12 before dividing. The test runs as
    ratio_z <= ratio_x / gamma via sorting and ``searchsorted``, O((n + m) log m); the
    reference uses a strict ``> 1``, we the paper's ``>= gamma``.

    With one shared z set the score is a non-decreasing function of ratio_x, so at
    gamma = 1 ROC metrics (AUC, TPR at FPR) equal those of ratio_x itself, up to ties.
    """
    x, s, k = _shadow_inputs(target_prob, shadow_probs, keep)
    pz, sz = _population(population_prob, population_shadow_probs, s.shape[0])
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if offline_a is not None and not 0.0 <= offline_a <= 1.0:
        raise ValueError(f"offline_a must lie in [0, 1], got {offline_a}")
    if offline_a is not None:
        _require((~k).any(axis=0), "OUT")
    use_x = ~k if offline_a is not None else np.ones_like(k)
    ratio_x = np.maximum(x, _PROB_FLOOR) / _pr_reference(s, use_x, offline_a)
    ratio_z = np.maximum(pz, _PROB_FLOOR) / _pr_reference(sz, np.ones_like(sz, bool), offline_a)
    return np.searchsorted(np.sort(ratio_z), ratio_x / gamma, side="right") / len(ratio_z)
