"""The one round loop every engine runs: plan a round, collect its clients' updates, finish it.

Engines differ only in how a round's updates are obtained (``updates_of``): the in-process
engine trains the sampled clients in this process, the Flower engines send them messages.
What is sampled, seeded, clipped, noised, averaged and accounted is ``FederatedServer``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from sandbox.federated.aggregate import Update
from sandbox.federated.server import FederatedServer, RoundPlan

RoundCallback = Callable[[dict, torch.Tensor], None]  # (round summary, global params)


def run_rounds(
    server: FederatedServer,
    updates_of: Callable[[RoundPlan], Iterable[Update]],
    *,
    on_round: RoundCallback | None = None,
    after_round: Callable[[dict], None] | None = None,
) -> None:
    """Run rounds until the server stops (rounds done, or the privacy budget reached).

    ``updates_of(plan)`` yields the sampled clients' updates of one round (from ``server.params``);
    ``after_round(summary)`` is the engine's own hook (e.g. a log line), ``on_round`` the caller's."""
    while (plan := server.next_round()) is not None:
        for client, update in zip(plan.clients, updates_of(plan), strict=True):
            server.receive(update, client=int(client))
        summary = server.finish_round()
        if after_round is not None:
            after_round(summary)
        if on_round is not None:
            on_round(summary, server.params)
