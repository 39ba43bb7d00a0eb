"""Clients from the corpus: one client = one training user (cross-device) or one workspace (cross-silo).

Built only from a ``UserSplit``'s training users, so opted-out users and workspaces are
excluded before any sampling. Each client's rows stay in its own slice; nothing here
mixes clients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sandbox.data.schema import Corpus
from sandbox.federated.client import ClientData
from sandbox.tasks.base import Examples

UNITS = ("user", "workspace")


@dataclass(frozen=True)
class ClientPartition:
    """Clients with at least one training example; ``owners[i]`` is client i's user or workspace index."""

    unit: str
    owners: np.ndarray
    offsets: np.ndarray  # client i's rows are rows[offsets[i]:offsets[i+1]]
    rows: np.ndarray  # row indices into the training examples, grouped by client

    def __len__(self) -> int:
        return len(self.owners)

    def data(self, client: int, examples: Examples) -> ClientData:
        rows = self.rows[self.offsets[client] : self.offsets[client + 1]]
        return ClientData(tokens=examples.tokens[rows], labels=examples.labels[rows])

    def datas(self, clients, examples: Examples) -> list[ClientData]:
        """``[data(c) for c in clients]`` with one gather for all of them (each client's data a view of it)."""
        clients = np.asarray(clients, dtype=np.int64)
        starts = self.offsets[clients]
        sizes = self.offsets[clients + 1] - starts
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = torch.from_numpy(self.rows[np.repeat(starts, sizes) + within])
        split = sizes.tolist()
        return [
            ClientData(tokens=t, labels=y)
            for t, y in zip(examples.tokens[rows].split(split), examples.labels[rows].split(split))
        ]

    def users_of(self, clients: np.ndarray, corpus: Corpus, examples: Examples) -> np.ndarray:
        """Sorted corpus user indices whose examples belong to ``clients`` (a workspace: its training users)."""
        rows = np.concatenate([self.rows[self.offsets[c] : self.offsets[c + 1]] for c in clients] or [np.zeros(0, int)])
        return np.unique(corpus.message_user[examples.message_index[rows]])

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def partition_clients(corpus: Corpus, examples: Examples, *, unit: str) -> ClientPartition:
    """Group training examples by their user (``unit="user"``) or their user's workspace."""
    if unit not in UNITS:
        raise ValueError(f"federation.unit must be one of {UNITS}, got {unit!r}")
    owner = corpus.message_user[examples.message_index]
    if unit == "workspace":
        owner = corpus.user_workspace[owner]
    rows = np.argsort(owner, kind="stable")
    owners, starts = np.unique(owner[rows], return_index=True)
    offsets = np.append(starts, len(rows)).astype(np.int64)
    return ClientPartition(unit=unit, owners=owners, offsets=offsets, rows=rows)
