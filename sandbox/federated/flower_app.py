"""The Flower engines: a ClientApp and a ServerApp (Message API) around the shared functions.

The ClientApp runs the in-process engine's client trainer (``make_trainer``) on its own data;
the server loop is ``run_inprocess``'s loop with the updates travelling as Flower messages (see flower_messages.py for exactly
what crosses). Neither side holds learning or privacy logic: ``FederatedServer`` samples,
seeds, clips, noises, averages and accounts, as in the in-process engine, so the same seed
gives the same model under ``privacy.noise_source=seeded``, and the same model up to the noise
draw under ``secure`` (the default: DP noise from a secret OS-CSPRNG state, on the server for
DP-FedAvg and on each client for client-level DP-SGD, never sent; ``sandbox.privacy.noise``).

- ``federation.engine=flower``: ``run_flower_simulation`` runs both apps in Flower's
  Simulation Engine (Ray), one virtual SuperNode per client, in this process.
- ``federation.engine=deployment``: ``server_app`` and ``client_app`` are the components
  ``flwr run .`` deploys (pyproject.toml ``[tool.flwr.app.components]``); one SuperNode per
  client, its ``partition-id`` node config = the client index. ``scripts/flower-deploy``
  starts a local SuperLink and SuperNodes and runs it.

A client rebuilds its own data from the run config it is told (the synthetic corpus is a
function of the config), keeps it per process, and picks its own rows by its partition id.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from hydra import compose, initialize_config_dir
from torch import nn

from sandbox.config import ConfigError, RunConfig, plain, resolve
from sandbox.federated.aggregate import Update
from sandbox.federated.client import LocalConfig
from sandbox.federated.client_dp import LocalDPSGD, make_trainer
from sandbox.federated.clients import ClientPartition, partition_clients
from sandbox.federated.flower_capture import MESSAGE_LOG_ENV, RecordingGrid, message_log_mod
from sandbox.federated.flower_messages import (
    TrainInstruction, partition_content, read_partition_content, read_train_content, read_update_content,
    run_config_from_text, run_config_text, train_content, update_content,
)
from sandbox.federated.server import FederatedServer, RoundPlan
from sandbox.prepare import Seeds, prepare
from sandbox.tasks.emoji import EmojiExamples

log = logging.getLogger("flwr")  # Flower's logger: shown by `flwr run --stream`
REPLY_TIMEOUT_SECONDS = 600.0  # a round whose replies are not all in by then fails
PULL_INTERVAL_SECONDS = 0.1  # how often the server asks for replies
NODE_WAIT_SECONDS = 120.0  # deployment: how long to wait for every SuperNode to connect


# -- ClientApp ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSide:
    """What a client process holds: its training rows (and everyone's, in this sandbox), a scratch model."""

    examples: EmojiExamples
    partition: ClientPartition
    model: nn.Module
    local: LocalConfig


@functools.lru_cache(maxsize=1)
def client_side(run_config: str) -> ClientSide:
    """The client's data rebuilt from the run config (once per process and config)."""
    cfg = run_config_from_text(run_config)
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    partition = partition_clients(data.corpus, data.train, unit=cfg.federation.unit)
    return ClientSide(examples=data.train, partition=partition, model=data.new_model(cfg, seeds),
                      local=cfg.federation.local)


@functools.lru_cache(maxsize=1)
def client_trainer(run_config: str, local_dp: LocalDPSGD | None):
    """The process' client trainer on its scratch model (``make_trainer``, as in-process)."""
    side = client_side(run_config)
    return make_trainer(side.model, side.local, local_dp)


client_app = ClientApp(mods=[message_log_mod])


@client_app.query()
def report_partition(msg: Message, context: Context) -> Message:
    """Discovery: tell the server which client (partition) this node is."""
    return Message(partition_content(int(context.node_config["partition-id"])), reply_to=msg)


@client_app.train()
def train_locally(msg: Message, context: Context) -> Message:
    """One local update of this node's client; only the update goes back.

    The server's seed drives batch order or Poisson sampling. Under client-level DP-SGD with
    secure noise the client draws its noise state itself (``PrivateLocalTrainer.update``).
    """
    task = read_train_content(msg.content)
    client = int(context.node_config["partition-id"])
    if task.client != client:
        raise ValueError(f"round {task.round}: sent to client {client} but addressed to client {task.client}")
    side = client_side(task.run_config)
    trainer = client_trainer(task.run_config, task.local_dp)
    trainer.load(task.params)
    update = trainer.update(side.partition.data(client, side.examples),
                            generator=torch.Generator().manual_seed(task.seed), clip_norm=task.clip_norm)
    return Message(update_content(update), reply_to=msg)


# -- server loop -------------------------------------------------------------------------------
def exchange(grid: Grid, messages: list[Message], *, what: str,
             timeout: float = REPLY_TIMEOUT_SECONDS) -> dict[int, Message]:
    """Send ``messages`` (one per node) and return the replies by node; any error or missing reply raises.

    Pulls every ``PULL_INTERVAL_SECONDS`` (``Grid.send_and_receive`` of the deployment Grid waits 3 s
    between pulls, which would dominate a small round).
    """
    if not messages:  # Poisson sampling can pick no client in a round
        return {}
    pending, replies = set(grid.push_messages(messages)), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for reply in grid.pull_messages(pending):
            pending.discard(reply.metadata.reply_to_message_id)
            replies[reply.metadata.src_node_id] = reply
        if pending:
            time.sleep(PULL_INTERVAL_SECONDS)
    for node, reply in replies.items():
        if reply.has_error():
            raise RuntimeError(f"{what}: node {node} replied with error {reply.error.code}: {reply.error.reason}")
    missing = sorted({m.metadata.dst_node_id for m in messages} - set(replies))
    if missing:
        raise RuntimeError(f"{what}: no reply from nodes {missing} within {timeout:.0f} s")
    return replies


def discover_client_nodes(grid: Grid, *, n_clients: int, wait_seconds: float) -> dict[int, int]:
    """client index → node id, from each node's partition id (one QUERY per node).

    Needs exactly one node per client: partition ids 0 … n_clients − 1, each once.
    """
    deadline = time.monotonic() + wait_seconds
    while len(node_ids := sorted(grid.get_node_ids())) < n_clients:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(node_ids)} nodes connected after {wait_seconds:.0f} s; "
                               f"this run has {n_clients} clients and needs one node per client")
        time.sleep(0.2)
    queries = [Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY, group_id="discovery")
               for node in node_ids]
    replies = exchange(grid, queries, what="discovery")
    clients = {node: read_partition_content(reply.content) for node, reply in replies.items()}
    if sorted(clients.values()) != list(range(n_clients)):
        raise RuntimeError(f"nodes report partition ids {sorted(clients.values())}; this run has {n_clients} "
                           f"clients and needs partition ids 0..{n_clients - 1}, one node each")
    return {client: node for node, client in clients.items()}


def train_round(grid: Grid, plan: RoundPlan, params: torch.Tensor, *, nodes: dict[int, int],
                run_config: str) -> list[Update]:
    """The sampled clients' updates, in the plan's (ascending client-index) order, as in-process."""
    messages = [
        Message(train_content(TrainInstruction(params=params, round=plan.round, client=int(client), seed=seed,
                                               clip_norm=plan.clip_norm, run_config=run_config,
                                               local_dp=plan.local_dp)),
                dst_node_id=nodes[int(client)], message_type=MessageType.TRAIN, group_id=str(plan.round))
        for client, seed in zip(plan.clients, plan.client_seeds)]
    replies = exchange(grid, messages, what=f"round {plan.round}")
    return [read_update_content(replies[nodes[int(client)]].content) for client in plan.clients]


def run_flower_rounds(grid: Grid, server: FederatedServer, *, n_clients: int, cfg: RunConfig, on_round=None,
                      wait_seconds: float = NODE_WAIT_SECONDS) -> dict:
    """``run_inprocess`` over a Flower Grid; returns the engine's timing (seconds) for the record."""
    if os.environ.get(MESSAGE_LOG_ENV):
        grid = RecordingGrid(grid)
    started = time.perf_counter()
    nodes = discover_client_nodes(grid, n_clients=n_clients, wait_seconds=wait_seconds)
    discovered = time.perf_counter()
    log.info("%d clients on %d nodes (discovery %.1f s)", n_clients, len(nodes), discovered - started)
    run_config = run_config_text(cfg)
    while (plan := server.next_round()) is not None:
        for update in train_round(grid, plan, server.params, nodes=nodes, run_config=run_config):
            server.receive(update)
        summary = server.finish_round()
        log.info("round %d: %d clients, train loss %s", summary["round"], summary["clients"], summary["train_loss"])
        if on_round is not None:
            on_round(summary, server.params)
    return {"node_discovery_seconds": round(discovered - started, 3)}


# -- ServerApp: the Deployment Engine (`flwr run .`) --------------------------------------------
def compose_run_config(overrides: list[str]):
    """The Hydra config for ``overrides`` (as on the command line), with the deployment engine."""
    from sandbox.__main__ import CONF_DIR  # the CLI's config directory: one source of truth

    engine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "federation.engine"]
    if engine and engine != ["federation.engine=deployment"]:
        raise ConfigError(f"federation.engine: a deployment run is engine 'deployment', got {engine[0]!r}")
    if not engine:
        overrides = [*overrides, "federation.engine=deployment"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


server_app = ServerApp()


@server_app.main()
def run_deployment(grid: Grid, context: Context) -> None:
    """One whole run (``sandbox.run.run``) on this Grid; record.json and model.pt go to run-config ``out-dir``.

    Run config: ``overrides`` (Hydra overrides, space-separated, as for ``python -m sandbox``)
    and ``out-dir`` (an absolute directory, created if needed).
    """
    from sandbox.run import run

    overrides = shlex.split(str(context.run_config.get("overrides", "")))
    out_dir = str(context.run_config.get("out-dir", ""))
    if not os.path.isabs(out_dir):
        raise ConfigError(f"run config out-dir must be an absolute directory, got {out_dir!r}")
    hydra_cfg = compose_run_config(overrides)
    cfg = resolve(hydra_cfg)
    if cfg.mode != "federated":
        raise ConfigError("mode: the Deployment Engine runs federated training: add mode=federated")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    record = run(cfg, out_dir=Path(out_dir), resolved_config=plain(hydra_cfg),
                 grid=grid)
    log.info("run %s: %d rounds, epsilon %s; record in %s", record["status"], record["privacy"]["steps"],
             record["privacy"]["epsilon"], out_dir)


def count_clients(overrides: list[str]) -> int:
    """How many clients (= SuperNodes needed) the run configured by ``overrides`` has."""
    cfg = resolve(compose_run_config(overrides))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    return len(partition_clients(data.corpus, data.train, unit=cfg.federation.unit))
