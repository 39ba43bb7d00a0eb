"""``federation.engine=flower``: the Flower apps in Flower's Simulation Engine (Ray), in this process.

One virtual SuperNode per client, each ClientApp call on 1 CPU. The ServerApp is a closure
over the caller's ``FederatedServer`` and round callback, so the run's server state never
leaves this process; only the ClientApp runs in Ray's worker processes.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from sandbox.config import RunConfig
from sandbox.federated.flower_client import client_app
from sandbox.federated.flower_server import run_flower_rounds
from sandbox.federated.server import FederatedServer


def _backend_config() -> dict:
    # A fresh dict per run: Flower fills in defaults in place.
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False},
    }


@contextmanager
def quiet_flower_logs():
    """Flower's INFO lines and its `run_simulation` deprecation notice off; warnings and errors stay."""
    logger = logging.getLogger("flwr")
    level = logger.level
    drop_deprecation = lambda record: "DEPRECATED FEATURE" not in record.getMessage()  # noqa: E731
    logger.setLevel(logging.WARNING)
    logger.addFilter(drop_deprecation)
    try:
        yield
    finally:
        logger.removeFilter(drop_deprecation)
        logger.setLevel(level)


def run_flower_simulation(server: FederatedServer, *, n_clients: int, cfg: RunConfig, on_round=None) -> dict:
    """Run the rounds through Flower's Simulation Engine; returns its timing (seconds).

    ``engine_startup_seconds``: from the call until round 1 can start: Ray start-up, the
    ClientApp loading in Ray's workers, and the QUERY round that maps nodes to clients;
    ``rounds_seconds``: the rounds themselves; ``engine_shutdown_seconds``: Ray shutting down.
    """
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    marks = {"called": time.perf_counter()}
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        marks["main"] = time.perf_counter()
        marks["timing"] = run_flower_rounds(grid, server, n_clients=n_clients, cfg=cfg, on_round=on_round)
        marks["done"] = time.perf_counter()

    with quiet_flower_logs():
        run_simulation(
            server_app=app, client_app=client_app, num_supernodes=n_clients, backend_config=_backend_config()
        )
    if "done" not in marks:
        raise RuntimeError("Flower's simulation ended before the ServerApp finished its rounds")
    rounds_started = marks["main"] + marks["timing"]["node_discovery_seconds"]
    return {
        "engine_startup_seconds": round(rounds_started - marks["called"], 3),
        "rounds_seconds": round(marks["done"] - rounds_started, 3),
        "engine_shutdown_seconds": round(time.perf_counter() - marks["done"], 3),
        **{k: v for k, v in marks["timing"].items() if k != "node_discovery_seconds"},  # upload bytes, secagg
    }
