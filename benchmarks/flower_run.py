"""The matched workload (issue 17) on Flower's own Simulation Engine with its DP strategy (flwr 1.41).

A ServerApp (Message API) whose strategy is Flower's ``DifferentialPrivacyServerSideFixedClipping``
(noise multiplier 1, clipping norm 1, 100 sampled clients) around ``FedAvg(fraction_train=0.05,
fraction_evaluate=0.0)``, and a ClientApp whose ``@app.train()`` trains the node's user
(``partition-id`` u → user u's rows of ``workload_arrays``) for one local epoch of batch-16 SGD
at lr 0.1 with torch on the matched model, and sends the model back. ``run_simulation`` with one
virtual SuperNode per user (2,000), each ClientApp call on 1 CPU (Ray).

The strategy clips each reply's difference from the global model to C = 1, averages the clipped
models (``weighted_by_key="uniform-weight"``: every client sends weight 1, the unweighted mean
DP-FedAvg needs and that Flower's own accountant insists on), and adds Gaussian noise of std
z·C/100 to the average (server step: lr 1, the averaged model is the new model). ``evaluate_fn``
is called by ``Strategy.start`` before round 1 and after every round; its timestamps give
rounds 2..10 (Ray's start-up, the ClientApp loading in Ray's workers and the shut-down excluded).

Difference from the in-process engine that Flower's API imposes: ``FedAvg`` samples a fixed
``int(0.05 · 2000)`` = 100 nodes a round without replacement (``random.sample``), not a
Poisson cohort at q = 0.05.

Nothing here imports ``sandbox``: Ray's workers import this module for the ClientApp.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from contextlib import contextmanager

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from flwr.simulation import run_simulation

from benchmarks.peer_workload import (
    CLIP,
    COHORT,
    N_USERS,
    NOISE,
    ROUNDS,
    SAMPLE_RATE,
    local_epoch,
    n_parameters,
    new_model,
    user_rows,
    workload_arrays,
)

WEIGHT_KEY = "uniform-weight"


@functools.lru_cache(maxsize=1)
def _client_side(seed: int):
    """A Ray worker's copy of the arrays and its scratch model (built once per process)."""
    return workload_arrays(seed), new_model(seed)


def train_user(content: RecordDict, user: int, seed: int = 0) -> RecordDict:
    """One local epoch of ``user`` from the global model in ``content``; the reply's content."""
    arrays, model = _client_side(seed)
    model.load_state_dict(content["arrays"].to_torch_state_dict())
    tokens, labels = user_rows(arrays, user)
    server_round = int(content["config"]["server-round"])
    generator = torch.Generator().manual_seed(seed * 1_000_003 + server_round * N_USERS + user)
    loss = local_epoch(model, tokens, labels, generator=generator)
    metrics = MetricRecord({WEIGHT_KEY: 1, "num-examples": len(labels), "train-loss": loss})
    return RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """The node's user: partition id u is user u of the matched workload."""
    return Message(train_user(msg.content, int(context.node_config["partition-id"])), reply_to=msg)


def _backend_config() -> dict:
    # a fresh dict per run: Flower fills in defaults in place
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"logging_level": "ERROR", "log_to_driver": False, "include_dashboard": False},
    }


@contextmanager
def _quiet_flower():
    """Flower's per-round INFO lines, its ``run_simulation`` deprecation notice and FedAvg's notice that
    ``fraction_evaluate=0`` skips federated evaluation off; other warnings stay."""
    logger = logging.getLogger("flwr")
    level = logger.level
    notices = ("DEPRECATED FEATURE", "Federated evaluation will be skipped")
    drop = lambda record: not any(n in record.getMessage() for n in notices)
    logger.setLevel(logging.WARNING)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
        logger.setLevel(level)


def run(seed: int = 0, rounds: int = ROUNDS) -> dict:
    """Flower's simulation of the matched workload: seconds per round over rounds 2..rounds, and checks."""
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")  # the venv has everything
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
    stamps: dict[int, float] = {}
    cohorts: list[list[int]] = []  # each round's replies: their example counts
    marks = {"called": time.perf_counter()}
    model = new_model(seed)

    def cohort_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
        cohorts.append([int(next(iter(c.metric_records.values()))["num-examples"]) for c in contents])
        return aggregate_metricrecords(contents, weight_key)

    def stamp(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        stamps[server_round] = time.perf_counter()
        return None

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        # FedAvg sizes its sample from the nodes connected when a round starts: wait for all of them
        # (in round 1 some of the 2,000 virtual SuperNodes may still be registering)
        while len(list(grid.get_node_ids())) < N_USERS:
            time.sleep(0.05)
        strategy = DifferentialPrivacyServerSideFixedClipping(
            FedAvg(
                fraction_train=SAMPLE_RATE,
                fraction_evaluate=0.0,
                min_available_nodes=N_USERS,
                weighted_by_key=WEIGHT_KEY,
                train_metrics_aggr_fn=cohort_metrics,
            ),
            noise_multiplier=NOISE,
            clipping_norm=CLIP,
            num_sampled_clients=COHORT,
        )
        result = strategy.start(
            grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=rounds, evaluate_fn=stamp
        )
        marks["done"] = time.perf_counter()
        marks["final_parameters"] = sum(a.numpy().size for a in result.arrays.values())

    with _quiet_flower():
        run_simulation(server_app=app, client_app=client_app, num_supernodes=N_USERS, backend_config=_backend_config())
    if "done" not in marks:
        raise RuntimeError("Flower's simulation ended before the ServerApp finished its rounds")
    timed = [stamps[r] for r in range(1, rounds + 1)]
    return {
        "engine": "flower",
        "seconds_per_round": (timed[-1] - timed[0]) / (len(timed) - 1),
        "rounds": len(cohorts),
        "mean_cohort": float(np.mean([len(c) for c in cohorts[1:]])),  # the timed rounds' replies
        "mean_examples": float(np.mean([sum(c) for c in cohorts[1:]])),
        "n_parameters": n_parameters(model),
        "final_parameters": int(marks["final_parameters"]),
        "startup_seconds": stamps[1] - marks["called"],  # Ray, the workers loading the ClientApp, round 1
        "shutdown_seconds": time.perf_counter() - marks["done"],
    }
