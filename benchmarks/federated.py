"""`make bench` (federated): seconds per round, in-process engine vs Flower's Simulation Engine.

Same config, data, seed and server settings; only the engine differs, so the two runs do
the same work (and end in the same model, which is checked). Both are measured side by
side in one process, alternating. Flower's one-time costs (Ray start-up, ClientApps
loading in Ray's workers, node discovery; Ray shutdown) are reported apart from its
per-round time. The in-process engine is measured twice, with clients batched (the
default) and one at a time (``federation.client_batch=0``). All run torch on one thread per client update: the in-process engine
sets it, Ray gives each ClientApp one CPU.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn.utils import parameters_to_vector

from sandbox.config import resolve
from sandbox.federated.clients import partition_clients
from sandbox.federated.flower_simulation import run_flower_simulation
from sandbox.federated.inprocess import run_inprocess
from sandbox.federated.server import FederatedServer
from sandbox.prepare import Seeds, prepare

OVERRIDES = [
    "mode=federated",
    "privacy=none",
    "data.n_users=500",
    "federation.rounds=5",
    "federation.sample_rate=0.1",
    "progress=false",
]
REPEATS = 2


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from sandbox.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _server(cfg, data, seeds, n_clients: int) -> FederatedServer:
    params = parameters_to_vector(data.new_model(cfg, seeds).parameters()).detach()
    return FederatedServer(
        params=params, n_clients=n_clients, cfg=cfg.federation, dp=None, book=None, seed=seeds.federation
    )


def _seconds_per_round_inprocess(cfg, data, seeds, partition, client_batch: int) -> tuple[float, torch.Tensor]:
    server = _server(cfg, data, seeds, len(partition))
    started = time.perf_counter()
    run_inprocess(
        server,
        partition=partition,
        examples=data.train,
        model=data.new_model(cfg, seeds),
        local=cfg.federation.local,
        client_batch=client_batch,
    )
    return (time.perf_counter() - started) / cfg.federation.rounds, server.params


def main() -> None:
    cfg = resolve(_compose(OVERRIDES))
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    partition = partition_clients(data.corpus, data.train, unit=cfg.federation.unit)
    rounds = cfg.federation.rounds
    inproc, loop, flower, startup, shutdown, params = [], [], [], [], [], {}
    for _ in range(REPEATS):
        seconds, params["inprocess"] = _seconds_per_round_inprocess(
            cfg, data, seeds, partition, cfg.federation.client_batch
        )
        inproc.append(seconds)
        seconds, params["loop"] = _seconds_per_round_inprocess(cfg, data, seeds, partition, 0)
        loop.append(seconds)
        server = _server(cfg, data, seeds, len(partition))
        timing = run_flower_simulation(server, n_clients=len(partition), cfg=cfg)
        flower.append(timing["rounds_seconds"] / rounds)
        startup.append(timing["engine_startup_seconds"])
        shutdown.append(timing["engine_shutdown_seconds"])
        params["flower"] = server.params
    same = float((params["inprocess"] - params["flower"]).abs().max())
    same_loop = float((params["loop"] - params["flower"]).abs().max())
    i, o, f = statistics.median(inproc), statistics.median(loop), statistics.median(flower)
    print(
        f"federated rounds: {' '.join(OVERRIDES)}; {len(partition)} clients "
        f"(expected {cfg.federation.sample_rate * len(partition):.1f} per round); "
        f"{params['flower'].numel():,} parameters; median of {REPEATS}"
    )
    print(
        f"  in-process engine       : {i:7.3f} s/round   (clients batched, "
        f"federation.client_batch={cfg.federation.client_batch})"
    )
    print(f"  in-process, one by one  : {o:7.3f} s/round   (federation.client_batch=0)")
    print(f"  Flower simulation (Ray) : {f:7.3f} s/round   (one ClientApp per CPU)")
    print(f"  ratio Flower / in-process: {f / i:.2f}×   (one by one: {f / o:.2f}×; batched vs one by one {o / i:.2f}×)")
    print(
        f"  Flower one-time: start-up {statistics.median(startup):.1f} s (Ray, ClientApps loading, "
        f"discovery of {len(partition)} nodes), shutdown {statistics.median(shutdown):.1f} s"
    )
    print(f"  same model as Flower: max |Δparam| = {same:.1e} batched, {same_loop:.1e} one by one")


if __name__ == "__main__":
    main()
