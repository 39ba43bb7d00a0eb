"""Canary exposure and one-run guesses against hand-computed and scipy-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sandbox.audit import exposure as exposure_module
from sandbox.audit.exposure import exposure, exposure_by_fit, exposure_by_rank, one_run_guesses


@pytest.mark.parametrize(
    "rank, size, bits",
    [
        (1, 10**6, math.log2(10**6)),  # ranked first of the space: the most exposure there is
        (1, 1024, 10.0),
        (2, 1024, 9.0),
        (1024, 1024, 0.0),  # ranked last: nothing learned
        (4, 64, 4.0),
        (1, 1, 0.0),
        (np.int64(8), np.int64(1024), 7.0),  # numpy integers (ranks come out of numpy)
    ],
)
def test_exposure_is_log2_space_minus_log2_rank(rank, size, bits):
    got = exposure(rank, size)
    assert isinstance(got, float) and got == pytest.approx(bits, abs=1e-12)


@pytest.mark.parametrize(
    "rank, size, match",
    [
        (0, 10, "rank must be >= 1"),  # 1-based
        (-3, 10, "rank must be >= 1"),
        (11, 10, r"rank must be <= space_size \(10\)"),
        (1, 0, "space_size must be >= 1"),
        (1.5, 10, "rank must be an integer"),
        (2.0, 10, "rank must be an integer"),
        (True, 10, "rank must be an integer"),
        (1, "10", "space_size must be an integer"),
        (None, 10, "rank must be an integer"),
    ],
)
def test_exposure_refuses_bad_inputs_clearly(rank, size, match):
    with pytest.raises(ValueError, match=match):
        exposure(rank, size)


def test_exposure_by_rank_hand_cases():
    refs = np.arange(99, dtype=float)  # 0, 1, ..., 98
    out = exposure_by_rank([1000.0, 98.0, 49.5, -1.0], refs)
    # ranks: 1 (above all), 2 (tie with 98 counts against), 1 + 49 = 50, 1 + 99 = 100.
    expected = math.log2(100) - np.log2([1, 2, 50, 100])
    np.testing.assert_allclose(out, expected)
    assert out[0] == pytest.approx(math.log2(100)) and out[-1] == 0.0


def test_exposure_by_rank_matches_counting():
    rng = np.random.default_rng(0)
    refs, canaries = rng.normal(size=500).round(1), rng.normal(size=40).round(1)
    ranks = np.array([1 + sum(r >= c for r in refs) for c in canaries])
    np.testing.assert_allclose(exposure_by_rank(canaries, refs), np.log2(len(refs) + 1) - np.log2(ranks))


def normal_refs(seed: int = 0, n: int = 5000):
    return np.random.default_rng(seed).normal(3.0, 2.0, size=n)


def test_exposure_by_fit_close_to_rank_in_the_bulk():
    refs = normal_refs()
    canaries = 3.0 + 2.0 * np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(exposure_by_fit(canaries, refs), exposure_by_rank(canaries, refs), atol=0.15)


def test_exposure_by_fit_extrapolates_past_rank_ceiling():
    refs = normal_refs()
    canary = 3.0 + 2.0 * 5.0  # five standard deviations out: P ~ 2.9e-7
    ceiling = math.log2(len(refs) + 1)
    assert exposure_by_rank([canary], refs)[0] == pytest.approx(ceiling)
    expected = -math.log2(stats.norm.sf(canary, refs.mean(), refs.std()))
    got = exposure_by_fit([canary], refs)[0]
    assert got > ceiling + 5
    assert got == pytest.approx(expected, rel=0.1)


def test_exposure_by_fit_finite_far_in_the_tail():
    refs, canary = normal_refs(), 3.0 + 2.0 * 60  # sf ~ 1e-785 underflows float64
    assert stats.skewnorm.sf(canary, *stats.skewnorm.fit(refs)) == 0.0
    expected = -stats.norm.logsf(canary, refs.mean(), refs.std()) / math.log(2)  # ~2600 bits
    got = exposure_by_fit([canary], refs)[0]
    assert np.isfinite(got) and got == pytest.approx(expected, rel=0.2)


def test_exposure_by_fit_falls_back_to_normal(monkeypatch):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("no convergence")

    monkeypatch.setattr(exposure_module.stats.skewnorm, "fit", broken_fit)
    refs, canaries = normal_refs(1, 300), np.array([3.0, 9.0, 3.0 + 2.0 * 60])
    expected = -stats.norm.logsf(canaries, refs.mean(), refs.std()) / math.log(2)
    # Exact up to the last canary, where the tail expansion replaces an underflowed logsf.
    np.testing.assert_allclose(exposure_by_fit(canaries, refs), expected, rtol=1e-6)


def test_exposure_input_errors():
    with pytest.raises(ValueError, match="all equal"):
        exposure_by_fit([1.0], [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        exposure_by_fit([1.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        exposure_by_rank([np.nan], [1.0, 2.0])


def test_one_run_guesses_hand_case():
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.7, 0.3])
    included = np.array([1, 0, 1, 0, 1, 1, 0], dtype=bool)
    # Ranked high to low: 0.9 in, 0.8 out, 0.7 in, 0.5 in, 0.3 out, 0.2 in, 0.1 out.
    assert one_run_guesses(scores, included, n_guess_in=3, n_guess_out=2) == (5, 3)
    assert one_run_guesses(scores, included, n_guess_in=1, n_guess_out=0) == (1, 1)
    assert one_run_guesses(scores, included, n_guess_in=0, n_guess_out=3) == (3, 2)
    assert one_run_guesses(scores, included, n_guess_in=0, n_guess_out=0) == (0, 0)
    assert one_run_guesses(scores, included, n_guess_in=4, n_guess_out=3) == (7, 5)


def test_one_run_guesses_validation():
    scores, included = np.zeros(4), np.array([True, False, True, False])
    with pytest.raises(ValueError, match="exceeds m = 4"):
        one_run_guesses(scores, included, n_guess_in=3, n_guess_out=2)
    with pytest.raises(ValueError, match="n_guess_in"):
        one_run_guesses(scores, included, n_guess_in=-1, n_guess_out=0)
    with pytest.raises(ValueError, match="included must have shape"):
        one_run_guesses(scores, included[:3], n_guess_in=1, n_guess_out=1)


def test_secret_space_search_ranks_each_canary_among_all_secrets_with_its_own_reaction():
    """A stand-in model whose statistic is known in closed form, so every rank is hand-computed:
    reaction 0 scores secret v as -|v - 123456| (its canary, 123456, alone on top: extracted);
    reaction 1 scores v as v % 1000 (the canary 000999 ties with 999 others at the top: rank 1000)."""
    from sandbox.audit.exposure import search_secret_space
    from sandbox.data.canaries import CANARY_TEMPLATE, format_secret

    def featurize(texts):  # the "tokens": the secret's value
        return np.array([int(t.rsplit(" ", 1)[1]) for t in texts])

    def stat(values, y):
        return np.where(np.asarray(y) == 0, -np.abs(values - 123456), values % 1000).astype(float)

    texts = [CANARY_TEMPLATE.format(secret=format_secret(v, "compact")) for v in (123456, 999, 123456)]
    seen = []
    out = search_secret_space(
        stat,
        lambda tokens: tokens,
        texts,
        [0, 1, 1],
        template=CANARY_TEMPLATE,
        secret_format="compact",
        featurize=featurize,
        chunk=250_000,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(250_000 * i, 1_000_000) for i in (1, 2, 3, 4)]  # after every chunk of the space
    # 123456 with reaction 1 scores 456: the 1000 residues 457..999 each appear 1000 times above it, and
    # 456 itself 1000 times (itself included): rank = 543 * 1000 + 1000
    assert out["n_canaries"] == 3 and out["n_extracted"] == 1
    assert out["rank"] == {"min": 1, "median": 1000.0}
    ranks = np.array([1, 1000, 544_000])
    assert out["exposure_exact"]["mean"] == pytest.approx(np.mean(np.log2(1e6) - np.log2(ranks)))
    with pytest.raises(ValueError, match="not a text of the space"):
        search_secret_space(
            stat,
            lambda t: t,
            ["my verification code is 12345"],
            [0],
            template=CANARY_TEMPLATE,
            secret_format="compact",
            featurize=featurize,
        )
