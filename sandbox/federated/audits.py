"""The federated audits that watch the round loop: which observers a run's ``audit.attack`` installs.

``audit=canary_clients`` inserts canary clients (``sandbox.federated.canary_clients``) and
``audit=server_view`` records what the server receives from each client
(``sandbox.federated.server_view``); every other audit watches nothing during training. The
statistics and verdicts of both are computed after training, by ``sandbox.audit``, from
``Outcome.observations``.
"""

from __future__ import annotations

from sandbox.config import RunConfig
from sandbox.federated.observe import RoundObserver


def observers_for(
    cfg: RunConfig, *, model, n_clients: int, seed: int, example_counts=None
) -> tuple[RoundObserver, ...]:
    """The observers of this run's federated audit (none for a model-level audit); ``example_counts``:
    the real clients' example counts (FedAvg weighs a canary client as their mean)."""
    if cfg.audit.attack == "canary_clients":
        from sandbox.federated.canary_clients import make_canary_clients

        return (make_canary_clients(cfg, model=model, n_clients=n_clients, seed=seed, example_counts=example_counts),)
    if cfg.audit.attack == "server_view":
        from sandbox.federated.server_view import make_server_view

        return (make_server_view(cfg, model=model),)
    return ()
