"""What a curious server sees: the embedding rows each client's update touches (``audit=server_view``).

In federated learning the first observer of a client's data is the server, which receives every
sampled client's update. A hashed-text model's update is sparse: local SGD changes only the
embedding rows of the buckets of the tokens the client holds (``sandbox.federated.client``), so
the *set* of non-zero rows of an update is the set of hashed tokens of the client's messages,
whatever the values. DP-FedAvg clips each update and adds noise to the *sum*, after the server
has seen every clipped update: the rows stay exactly as visible as without DP. Only secure
aggregation hides them: the server then receives sums over a cohort (``on_aggregate``) and sees
the union of the cohort's rows.

:class:`ServerView` records, per update received (``on_update``: before any server-side
clipping), the client, the round, the non-zero embedding rows (int32) and the update's L2 norm;
per sum received (``on_aggregate``), the round, the clients it covers and its non-zero rows, a
row counting as zero when all its values are within ``tolerance`` of 0 (a sum decoded from
secure aggregation carries quantization error). The attack on these rows is
``sandbox.audit.server_view``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sandbox.config import ConfigError
from sandbox.federated.aggregate import Delta, SparseDelta, Update, delta_norm
from sandbox.federated.observe import Observer


@dataclass(frozen=True)
class EmbeddingLayout:
    """Where the embedding table sits in the flat parameter vector: coordinates [offset, offset + rows·dim)."""

    offset: int
    rows: int
    dim: int

    @classmethod
    def of(cls, model: nn.Module) -> EmbeddingLayout:
        """The first parameter (in ``model.parameters()`` order) that is an ``nn.Embedding`` weight."""
        weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        offset = 0
        for p in model.parameters():
            if id(p) in weights:
                return cls(offset=offset, rows=int(p.shape[0]), dim=int(p.shape[1]))
            offset += p.numel()
        raise ConfigError(
            f"audit.attack: server_view reads the embedding rows of hashed text; "
            f"{type(model).__name__} has no nn.Embedding"
        )

    @property
    def end(self) -> int:
        return self.offset + self.rows * self.dim

    def rows_of(self, delta: Delta | torch.Tensor, *, tolerance: float = 0.0) -> np.ndarray:
        """Sorted int32 rows of the embedding table with a coordinate of |value| > ``tolerance``."""
        if isinstance(delta, SparseDelta):
            index, values = delta.index, delta.values
            keep = (index >= self.offset) & (index < self.end) & (values.abs() > tolerance)
            rows = torch.unique_consecutive((index[keep] - self.offset) // self.dim)  # index is sorted
            return rows.numpy().astype(np.int32)
        table = delta[self.offset : self.end].reshape(self.rows, self.dim)
        return torch.nonzero((table.abs() > tolerance).any(dim=1)).reshape(-1).numpy().astype(np.int32)


@dataclass(frozen=True)
class ServerViewObservations:
    """What the server received, as rows of the embedding table (``ServerView.observations``).

    ``individual[client]``: (round, rows) of each update the server saw from that client;
    ``norms[client]``: their L2 norms, in the same order; ``aggregates``: (round, clients, rows) of
    each sum it saw instead (secure aggregation); ``unattributed``: updates without a client index.
    """

    layout: EmbeddingLayout
    tolerance: float
    individual: dict[int, list[tuple[int, np.ndarray]]]
    norms: dict[int, list[float]]
    aggregates: list[tuple[int, np.ndarray, np.ndarray]]
    updates_seen: int
    aggregates_seen: int
    unattributed: int

    def clients_seen_individually(self) -> np.ndarray:
        return np.array(sorted(self.individual), dtype=np.int64)

    def clients_in_aggregates(self) -> np.ndarray:
        if not self.aggregates:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([clients for _, clients, _ in self.aggregates])).astype(np.int64)


class ServerView(Observer):
    """Records the non-zero embedding rows of every update and sum the server receives."""

    name = "server_view"

    def __init__(self, layout: EmbeddingLayout, *, tolerance: float = 0.0):
        if tolerance < 0:
            raise ConfigError(f"audit.server_view_tolerance: must be ≥ 0, got {tolerance}")
        self.layout, self.tolerance = layout, float(tolerance)
        self._individual: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._norms: dict[int, list[float]] = {}
        self._aggregates: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._unattributed = 0

    def on_update(self, round: int, client: int, update: Update) -> None:
        """One update as received: exact zeros are what the client did not touch (no tolerance)."""
        if client < 0:  # an engine that did not say whose update this is
            self._unattributed += 1
            return
        self._individual.setdefault(int(client), []).append((int(round), self.layout.rows_of(update.delta)))
        self._norms.setdefault(int(client), []).append(delta_norm(update.delta))

    def on_aggregate(self, round: int, clients: np.ndarray, total: torch.Tensor) -> None:
        rows = self.layout.rows_of(total, tolerance=self.tolerance)
        self._aggregates.append((int(round), np.asarray(clients, dtype=np.int64).copy(), rows))

    def observations(self) -> ServerViewObservations:
        return ServerViewObservations(
            layout=self.layout,
            tolerance=self.tolerance,
            individual={c: list(v) for c, v in self._individual.items()},
            norms={c: list(v) for c, v in self._norms.items()},
            aggregates=list(self._aggregates),
            updates_seen=sum(len(v) for v in self._individual.values()),
            aggregates_seen=len(self._aggregates),
            unattributed=self._unattributed,
        )


def make_server_view(cfg, *, model: nn.Module) -> ServerView:
    """The observer of ``audit=server_view`` for ``model`` (``audit.server_view_tolerance``: see the module)."""
    return ServerView(EmbeddingLayout.of(model), tolerance=cfg.audit.server_view_tolerance)
