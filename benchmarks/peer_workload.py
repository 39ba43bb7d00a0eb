"""The matched workload (issue 17) for the peers' runs, standalone: numpy and torch only.

pfl-research runs in its own venv (``.venv-bench``: pfl 0.6 pins dp-accounting < 0.6, this
project needs 0.6), where the ``sandbox`` package is not installed, and Flower's ClientApp runs
in Ray's worker processes. Both take the workload from here: a copy of
``benchmarks.matched.workload_arrays`` (tests/test_bench_peers.py checks that the arrays are
identical) and the model of the brief, an ``EmbeddingBag(5000, 64, mode="mean")`` + MLP
64→64→64 (328,320 parameters, the same count and function as the project's
``HashedBagModel`` on these unpadded 12-token rows).

Nothing here imports ``sandbox``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

N_USERS, ZIPF, CAP, TOKENS = 2000, 1.8, 200, 12
BUCKETS, DIM, HIDDEN, CLASSES = 5000, 64, 64, 64
SAMPLE_RATE, BATCH, LOCAL_LR, ROUNDS = 0.05, 16, 0.1, 10
NOISE, CLIP = 1.0, 1.0
COHORT = round(SAMPLE_RATE * N_USERS)  # 100: the expected Poisson cohort, the peers' fixed one


def workload_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens [N, 12] in 1..4999, labels [N] in 0..63, offsets [users + 1]), as ``benchmarks.matched``."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.zipf(ZIPF, size=N_USERS), CAP)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    tokens = rng.integers(1, BUCKETS, size=(n, TOKENS), dtype=np.int64)
    labels = (tokens[:, 0] % CLASSES).astype(np.int64)  # learnable: the first token decides
    return tokens, labels, offsets


class BagModel(nn.Module):
    """EmbeddingBag(5000, 64, mean) → Linear(64, 64) → ReLU → Linear(64, 64)."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.EmbeddingBag(BUCKETS, DIM, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embedding(tokens))


def new_model(seed: int = 0) -> BagModel:
    torch.manual_seed(seed)
    return BagModel()


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def user_rows(arrays, user: int) -> tuple[torch.Tensor, torch.Tensor]:
    """User ``user``'s (tokens, labels) as tensors (views of the arrays)."""
    tokens, labels, offsets = arrays
    lo, hi = int(offsets[user]), int(offsets[user + 1])
    return torch.from_numpy(tokens[lo:hi]), torch.from_numpy(labels[lo:hi])


def local_epoch(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator) -> float:
    """One epoch of plain SGD (lr 0.1) over shuffled batches of 16, in place; returns the mean batch loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LOCAL_LR)
    order = torch.randperm(len(labels), generator=generator)
    losses = []
    for batch in order.split(BATCH):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens[batch]), labels[batch])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / max(1, len(losses))
