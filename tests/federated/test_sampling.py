"""Poisson client sampling: independent inclusion with probability q, seeded by the server."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.federated.sampling import poisson_sample_clients


def test_round_sizes_are_binomial_not_fixed():
    rng = np.random.default_rng(0)
    sizes = np.array([len(poisson_sample_clients(1000, sample_rate=0.05, rng=rng)) for _ in range(2000)])
    assert sizes.mean() == pytest.approx(50, rel=0.02)
    assert sizes.var() == pytest.approx(1000 * 0.05 * 0.95, rel=0.1)  # Binomial(N, q), not constant


def test_every_client_is_included_at_rate_q():
    rng = np.random.default_rng(1)
    counts = np.zeros(20)
    for _ in range(5000):
        counts[poisson_sample_clients(20, sample_rate=0.1, rng=rng)] += 1
    assert np.allclose(counts / 5000, 0.1, atol=0.015)


def test_seeded_and_bounded():
    a = poisson_sample_clients(100, sample_rate=0.3, rng=np.random.default_rng(5))
    b = poisson_sample_clients(100, sample_rate=0.3, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert len(poisson_sample_clients(7, sample_rate=1.0, rng=np.random.default_rng(0))) == 7
    with pytest.raises(ValueError):
        poisson_sample_clients(7, sample_rate=0.0, rng=np.random.default_rng(0))
