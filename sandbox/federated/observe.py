"""What a federated audit can watch and insert, inside the round loop of every engine.

A :class:`RoundObserver` is handed to ``FederatedServer`` (``observers=``). The server calls it
at fixed points of every round, in every engine (in-process, Flower simulation, deployment),
because those engines share the server:

* ``extra_clients``: how many clients the observer adds to the population (canary clients);
  they are Poisson-sampled with the same rate q as real clients, and DP-FedAvg's fixed
  denominator becomes q·(N + extra_clients). The accounting of real clients is unchanged: each
  real client's ε depends only on q, z and the rounds, none of which an observer changes.
* ``on_round_start(plan)``: the round's plan (which real clients were sampled).
* ``extra_updates(plan)``: the updates of the observer's own clients sampled this round, folded
  into the round's sum exactly like a real client's (clipped, summed, noised) but never passed
  to ``on_update``.
* ``on_update(round, client, update)``: one real client's update *as the server received it*,
  before any server-side clipping (what a curious server sees).
* ``on_aggregate(round, clients, total)``: a sum over clients the server received instead of
  their updates (secure aggregation: the server never sees ``on_update``).
* ``on_round_end(round, mean_delta, params)``: the round's released (noisy) mean delta and the
  global parameters after the server step.

``observations()`` returns what the audit needs after training (kept on ``Outcome.observations``
under the observer's ``name``); it must be JSON-free of raw data (it stays in memory).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from sandbox.federated.aggregate import Update


@runtime_checkable
class RoundObserver(Protocol):
    name: str
    extra_clients: int

    def on_round_start(self, plan) -> None: ...

    def extra_updates(self, plan) -> Iterable[Update]: ...

    def on_update(self, round: int, client: int, update: Update) -> None: ...

    def on_aggregate(self, round: int, clients: np.ndarray, total: torch.Tensor) -> None: ...

    def on_round_end(self, round: int, mean_delta: torch.Tensor, params: torch.Tensor) -> None: ...

    def observations(self) -> Any: ...


class Observer:
    """A do-nothing :class:`RoundObserver` to subclass: override only the hooks you need."""

    name = "observer"
    extra_clients = 0

    def on_round_start(self, plan) -> None:
        pass

    def extra_updates(self, plan) -> Iterable[Update]:
        return ()

    def on_update(self, round: int, client: int, update: Update) -> None:
        pass

    def on_aggregate(self, round: int, clients: np.ndarray, total: torch.Tensor) -> None:
        pass

    def on_round_end(self, round: int, mean_delta: torch.Tensor, params: torch.Tensor) -> None:
        pass

    def observations(self) -> Any:
        return None
