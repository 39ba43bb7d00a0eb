"""The one round loop every engine runs: plan a round, collect its clients' updates, finish it.

Engines differ only in how a round's updates are obtained (``updates_of``): the in-process
engine trains the sampled clients in this process, the Flower engines send them messages.
Under secure aggregation (``federation.secagg``) an engine delivers the round's ``RoundSum``
instead: the server then never holds one client's update. What is sampled, seeded, clipped,
noised, averaged and accounted is ``FederatedServer``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from sandbox.federated.aggregate import Update
from sandbox.federated.server import FederatedServer, RoundPlan

RoundCallback = Callable[[dict, torch.Tensor], None]  # (round summary, global params)


@dataclass(frozen=True)
class RoundSum:
    """A round's clients as the server receives them under secure aggregation: sums only.

    ``total``: the sum of their deltas (client-clipped under DP-FedAvg); ``weight``: what the mean
    divides by without DP-FedAvg; ``loss_sum``: the sum of their mean local losses; ``n_unclipped``:
    how many did not clip (adaptive clipping's count). ``clients``: who is in the sum (may be fewer
    than the plan's when an engine has to drop a round's lone client)."""

    total: torch.Tensor
    clients: np.ndarray
    weight: float
    loss_sum: float
    n_unclipped: int = 0


def run_rounds(
    server: FederatedServer,
    updates_of: Callable[[RoundPlan], Iterable[Update] | RoundSum],
    *,
    on_round: RoundCallback | None = None,
    after_round: Callable[[dict], None] | None = None,
) -> None:
    """Run rounds until the server stops (rounds done, or the privacy budget reached).

    ``updates_of(plan)`` yields the sampled clients' updates of one round (from ``server.params``),
    or returns their ``RoundSum`` (secure aggregation); ``after_round(summary)`` is the engine's own
    hook (e.g. a log line), ``on_round`` the caller's."""
    while (plan := server.next_round()) is not None:
        received = updates_of(plan)
        if isinstance(received, RoundSum):
            server.receive_sum(
                received.total,
                clients=received.clients,
                weight=received.weight,
                loss_sum=received.loss_sum,
                n_unclipped=received.n_unclipped,
            )
        else:
            for client, update in zip(plan.clients, received, strict=True):
                server.receive(update, client=int(client))
        summary = server.finish_round()
        if after_round is not None:
            after_round(summary)
        if on_round is not None:
            on_round(summary, server.params)
