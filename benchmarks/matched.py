"""The matched federated workload (issue 17): one task, three engines, seconds per round.

2,000 users with Zipf(1.8) example counts capped at 200; 12-token examples; a 5000×64 bag of
embeddings (mean) + MLP 64→64→64 (328,320 parameters); Poisson cohorts of about 100 clients
(q = 0.05); one local epoch of batch-16 SGD; DP-FedAvg with z = 1, C = 1; 10 rounds, of
which rounds 2–10 are timed (start-up excluded).

This module builds the workload and times the project's in-process engine on it; the peers'
runs (pfl-research, Flower's own simulation with its DP strategy) live in
``benchmarks.peers`` and take the same arrays (``workload_arrays``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from sandbox.config.schema import FederationConfig
from sandbox.federated.clients import ClientPartition
from sandbox.federated.inprocess import run_inprocess
from sandbox.federated.server import DPFedAvgSettings, FederatedServer
from sandbox.privacy import PrivacyBook
from sandbox.tasks.base import Examples
from sandbox.tasks.text import HashedBagModel

N_USERS, ZIPF, CAP, TOKENS = 2000, 1.8, 200, 12
BUCKETS, DIM, HIDDEN, CLASSES = 5000, 64, 64, 64
SAMPLE_RATE, BATCH, LOCAL_LR, ROUNDS = 0.05, 16, 0.1, 10
NOISE, CLIP, DELTA = 1.0, 1.0, 1e-5


@dataclass(frozen=True)
class ModelShape:
    n_buckets: int = BUCKETS
    embedding_dim: int = DIM
    hidden_dim: int = HIDDEN


def workload_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens [N, 12] in 1..4999, labels [N] in 0..63, offsets [users + 1]): user u owns rows offsets[u]:offsets[u+1]."""
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.zipf(ZIPF, size=N_USERS), CAP)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    tokens = rng.integers(1, BUCKETS, size=(n, TOKENS), dtype=np.int64)
    labels = (tokens[:, 0] % CLASSES).astype(np.int64)  # learnable: the first token decides
    return tokens, labels, offsets


def new_model(seed: int = 0) -> HashedBagModel:
    torch.manual_seed(seed)
    return HashedBagModel(config=ModelShape(), n_classes=CLASSES)


def n_parameters() -> int:
    return sum(p.numel() for p in new_model().parameters())


def federation(rounds: int = ROUNDS) -> FederationConfig:
    return FederationConfig(
        rounds=rounds,
        sample_rate=SAMPLE_RATE,
        local_epochs=1,
        local_batch_size=BATCH,
        local_lr=LOCAL_LR,
        server_optimizer="fedavg",
        server_lr=1.0,
        eval_every=rounds,
    )


def inprocess_seconds_per_round(arrays, *, rounds: int = ROUNDS, client_batch: int = 64) -> tuple[float, float]:
    """(seconds per round over rounds 2..rounds, ε after the last round) for the in-process engine."""
    tokens, labels, offsets = arrays
    examples = Examples(
        tokens=torch.from_numpy(tokens), labels=torch.from_numpy(labels), message_index=np.arange(len(labels))
    )
    partition = ClientPartition(
        unit="user", owners=np.arange(N_USERS), offsets=offsets, rows=np.arange(len(labels), dtype=np.int64)
    )
    model = new_model()
    cfg = federation(rounds)
    book = PrivacyBook(unit="user", delta=DELTA, accountant="rdp")
    server = FederatedServer(
        params=parameters_to_vector(model.parameters()).detach(),
        n_clients=N_USERS,
        cfg=cfg,
        dp=DPFedAvgSettings(noise_multiplier=NOISE, clip_norm=CLIP),
        book=book,
        seed=0,
    )
    stamps: list[float] = []
    run_inprocess(
        server,
        partition=partition,
        examples=examples,
        model=model,
        local=cfg.local,
        on_round=lambda summary, params: stamps.append(time.perf_counter()),
        client_batch=client_batch,
    )
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), book.epsilon()


def main() -> None:
    arrays = workload_arrays()
    print(
        f"matched workload: {N_USERS} users, {len(arrays[1]):,} examples, {n_parameters():,} parameters, "
        f"q={SAMPLE_RATE} (cohort ≈ {SAMPLE_RATE * N_USERS:.0f}), DP-FedAvg z={NOISE}, C={CLIP}"
    )
    for _ in range(3):
        seconds, eps = inprocess_seconds_per_round(arrays)
        print(f"  in-process: {seconds:.4f} s/round (ε={eps:.3f})")


if __name__ == "__main__":
    main()
