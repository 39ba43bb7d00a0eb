"""Poisson client sampling, owned by the server and seeded.

Each eligible client joins a round independently with probability q. This — not a
fixed number of clients per round — is what the subsampled-Gaussian accountants assume
(add/remove-one-client neighbouring relation), so it is the only sampling DP-FedAvg uses.
"""

from __future__ import annotations

import numpy as np


def poisson_sample_clients(n_clients: int, *, sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of the clients that take part in one round; may be empty."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    return np.flatnonzero(rng.random(n_clients) < sample_rate)
