"""Canary exposure (Secret Sharer) and the guesses of a one-run audit.

Scores follow the convention of :mod:`sandbox.audit.attacks`: higher = "more likely
memorised" (e.g. minus the log-perplexity of a canary). Reference scores belong to
candidates drawn from the same random space as the canaries but never inserted.

* Exposure: Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret Sharer: Evaluating and
  Testing Unintended Memorization in Neural Networks" (USENIX Security). With R candidates
  in the space, exposure = log2 R - log2 rank (:func:`exposure`, rank 1-based, the one
  place it is computed); here R - 1 references stand in for the
  other candidates, so R = n_ref + 1. Estimated by rank among the references
  (:func:`exposure_by_rank`, at most log2(n_ref + 1)) or by extrapolating a distribution
  fitted to the reference scores (:func:`exposure_by_fit`, the paper's "exposure via
  distribution modelling" with a skew-normal), which can exceed log2(n_ref + 1).
* Extraction (:func:`search_secret_space`): the attack the paper's exposure stands for, run in
  full: every text of the secret space (10^6) is scored, and a canary is *extracted* when its
  own secret scores above every other text of the space; its exposure is then exact,
  log2 |space| - log2 rank.
* Guesses: Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run"
  (NeurIPS); (r, v) feeds :func:`sandbox.audit.bounds.one_run_eps_lower_bound`.
"""

from __future__ import annotations

import math
import time
import warnings
from numbers import Integral

import numpy as np
from scipy import stats

from sandbox.data.canaries import SECRET_SPACE_SIZE, format_secret, secret_pattern

__all__ = ["exposure", "exposure_by_rank", "exposure_by_fit", "one_run_guesses", "search_secret_space"]


def _scores(name: str, x, *, min_len: int = 1) -> np.ndarray:
    a = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if a.ndim != 1 or len(a) < min_len:
        raise ValueError(f"{name} must be 1-D with at least {min_len} values, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite: {int(np.sum(~np.isfinite(a)))} are not")
    return a


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def exposure(rank: int, space_size: int) -> float:
    """Exposure of a secret ranked ``rank`` (1 = scored above every other) among ``space_size``
    candidates: log2 |R| − log2 rank (Carlini et al. 2019), in bits, in [0, log2 |R|].

    ``rank`` is 1-based and at most ``space_size``; both must be integers (numpy integers too).
    """
    size = _whole("space_size", space_size)
    r = _whole("rank", rank)
    if r > size:
        raise ValueError(f"rank must be <= space_size ({size}), got {r}")
    return math.log2(size) - math.log2(r)


def exposure_by_rank(canary_scores, reference_scores) -> np.ndarray:
    """Exposure log2(n_ref + 1) - log2(rank) per canary, rank = 1 + #(references >= canary).

    canary_scores [k], reference_scores [n_ref]; the result [k] lies in [0, log2(n_ref + 1)].
    Ties count against the canary (a reference with an equal score ranks above it).
    """
    c = _scores("canary_scores", canary_scores)
    ref = np.sort(_scores("reference_scores", reference_scores))
    rank = 1 + len(ref) - np.searchsorted(ref, c, side="left")
    return np.array([exposure(int(r), len(ref) + 1) for r in rank], dtype=np.float64)


def _fit(ref: np.ndarray) -> tuple[float, float, float]:
    """Skew-normal (shape, loc, scale) fitted to ``ref`` by maximum likelihood.

    Falls back to a normal fit (shape 0: the skew-normal is then the normal) when
    ``scipy.stats.skewnorm.fit`` raises or returns non-finite parameters.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            a, loc, scale = stats.skewnorm.fit(ref)
        if np.all(np.isfinite([a, loc, scale])) and scale > 0:
            return float(a), float(loc), float(scale)
    except (ValueError, RuntimeError, FloatingPointError):
        pass
    loc, scale = stats.norm.fit(ref)
    return 0.0, float(loc), float(scale)


def _skewnorm_logsf(x: np.ndarray, a: float, loc: float, scale: float) -> np.ndarray:
    """log P[S >= x] for S ~ skewnorm(a, loc, scale), finite also where the sf underflows.

    scipy's ``skewnorm.logsf`` is log(sf) and gives -inf beyond ~700 nats; there the
    first-order tail expansion log sf(t) ~ log f(t) - log h(t) is used, with the hazard
    h(t) = -d/dt log f(t) = t - a phi(a t) / Phi(a t) (relative error O(1/t^2) in sf).
    """
    t = (x - loc) / scale
    out = stats.skewnorm.logsf(t, a)
    far = ~np.isfinite(out) & (t > 0)
    if np.any(far):
        tf = t[far]
        hazard = tf - a * np.exp(stats.norm.logpdf(a * tf) - stats.norm.logcdf(a * tf))
        out[far] = stats.skewnorm.logpdf(tf, a) - np.log(hazard)
    return out


def exposure_by_fit(canary_scores, reference_scores) -> np.ndarray:
    """Exposure -log2 P[S >= canary] with S from a skew-normal fitted to the references, [k].

    Carlini et al. 2019, Section "exposure via distribution modelling": the paper fits a
    skew-normal to the log-perplexities of many random candidates and reads the exposure
    off its tail, which reaches beyond log2(n_ref + 1). ``scipy.stats.skewnorm.fit``
    (maximum likelihood) is used, falling back to a normal fit when it raises or returns
    non-finite parameters. The tail is -logsf / ln 2, with an asymptotic expansion where
    scipy's logsf underflows (beyond ~1000 bits), so the result stays finite.
    Needs at least 3 reference scores that are not all equal.
    """
    c = _scores("canary_scores", canary_scores)
    ref = _scores("reference_scores", reference_scores, min_len=3)
    if np.ptp(ref) == 0:
        raise ValueError("reference_scores are all equal: no distribution can be fitted")
    return -_skewnorm_logsf(c, *_fit(ref)) / math.log(2)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def one_run_guesses(scores, included, *, n_guess_in: int, n_guess_out: int) -> tuple[int, int]:
    """(r, v): guesses made and correct guesses of a one-run audit (Steinke et al. 2023).

    scores [m] per canary (higher = more likely included), included [m] bool (the truth).
    Canaries are ranked by score; the ``n_guess_in`` highest are guessed IN, the
    ``n_guess_out`` lowest OUT, the rest abstained on. Equal scores are ordered by index
    (stable sort: lower index counts as lower score). Requires n_guess_in + n_guess_out <= m.
    """
    s = _scores("scores", scores)
    inc = np.asarray(included)
    if inc.shape != s.shape:
        raise ValueError(f"included must have shape {s.shape}, got {inc.shape}")
    if inc.dtype != bool and not np.all((inc == 0) | (inc == 1)):
        raise ValueError("included must be boolean (or 0/1)")
    k_in, k_out = _count("n_guess_in", n_guess_in), _count("n_guess_out", n_guess_out)
    if k_in + k_out > len(s):
        raise ValueError(f"n_guess_in + n_guess_out = {k_in + k_out} exceeds m = {len(s)}")
    order = np.argsort(s, kind="stable")
    inc = inc.astype(bool)[order]
    correct = int(np.sum(inc[len(s) - k_in :])) + int(np.sum(~inc[:k_out]))
    return k_in + k_out, correct


def search_secret_space(
    stat, see, texts, labels, *, template: str, secret_format: str, featurize, chunk: int = 100_000, progress=None
) -> dict:
    """Extraction by search: each canary's rank among all texts of its secret space.

    ``stat(seen, labels)`` is the audit's statistic (higher = more memorised) of what the threat
    model ``see``s of featurised texts; a canary is ranked with its own reaction against every
    other secret of the space scored with that reaction, rank = 1 + #(others scoring ≥ it), as
    in :func:`exposure_by_rank`. Extracted: rank 1 (no other secret scores as high). An attacker
    who knew the reaction and searched the whole space would find exactly these. ``progress(done,
    total)``, if given, is called after every chunk of the space (secrets scored so far).
    """

    started = time.perf_counter()
    pattern = secret_pattern(template, secret_format)
    values = []
    for text in texts:
        match = pattern.match(text)
        if match is None:
            raise ValueError(f"canary {text!r} is not a text of the space ({secret_format} secrets in {template!r})")
        values.append(int(match.group(1).replace(" ", "")))
    values, labels = np.asarray(values, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    scores = {int(y): np.empty(SECRET_SPACE_SIZE) for y in np.unique(labels)}
    for start in range(0, SECRET_SPACE_SIZE if len(values) else 0, chunk):
        stop = min(start + chunk, SECRET_SPACE_SIZE)
        space = np.array(
            [template.format(secret=format_secret(v, secret_format)) for v in range(start, stop)], dtype=object
        )
        seen = see(featurize(space))
        for y, out in scores.items():
            out[start:stop] = stat(seen, np.full(stop - start, y))
        if progress is not None:
            progress(stop, SECRET_SPACE_SIZE)
    rank = np.array(
        [int(np.sum(scores[int(y)] >= scores[int(y)][v])) for v, y in zip(values, labels)], dtype=np.int64
    )  # counts the canary itself: 1 + #(others ≥ it)
    exact = np.array([exposure(int(r), SECRET_SPACE_SIZE) for r in rank], dtype=np.float64)
    return {
        "method": "whole secret space searched, each canary with its own reaction",
        "space_size": SECRET_SPACE_SIZE,
        "n_canaries": int(len(values)),
        "n_extracted": int(np.sum(rank == 1)),
        "rank": {
            "min": int(rank.min()) if len(rank) else None,
            "median": float(np.median(rank)) if len(rank) else None,
        },
        "exposure_exact": {
            "mean": float(exact.mean()) if len(rank) else None,
            "max": float(exact.max()) if len(rank) else None,
            "max_possible": math.log2(SECRET_SPACE_SIZE),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
