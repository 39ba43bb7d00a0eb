"""The Flower server loop: the shared round loop (``rounds.run_rounds``) over a Flower Grid.

Used by the Simulation Engine (``flower_simulation``) and by the deployment ServerApp
(``sandbox.app``). ``FederatedServer`` samples, seeds, clips, noises, averages and accounts as
in the in-process engine, so the same seed gives the same model under
``privacy.noise_source=seeded``; only the updates travel as Flower messages. With
``federation.secagg`` each round is one run of Flower's SecAgg+ (``flower_secagg``) and the
server receives the round's sum only.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from sandbox.config import RunConfig
from sandbox.federated.aggregate import Update
from sandbox.federated.flower_capture import MESSAGE_LOG_ENV, RecordingGrid
from sandbox.federated.flower_messages import (
    TrainInstruction,
    read_partition_content,
    read_update_content,
    run_config_text,
    train_content,
)
from sandbox.federated.flower_secagg import PollingGrid, SecAggSettings, SecureAggregator, content_bytes
from sandbox.federated.rounds import run_rounds
from sandbox.federated.server import FederatedServer, RoundPlan

log = logging.getLogger("flwr")  # Flower's logger: shown by `flwr run --stream`
REPLY_TIMEOUT_SECONDS = 600.0  # a round whose replies are not all in by then fails
PULL_INTERVAL_SECONDS = 0.1  # how often the server asks for replies
NODE_WAIT_SECONDS = 120.0  # deployment: how long to wait for every SuperNode to connect


def exchange(
    grid: Grid, messages: list[Message], *, what: str, timeout: float = REPLY_TIMEOUT_SECONDS
) -> dict[int, Message]:
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

    Needs one node per client: partition ids 0 … n_clients − 1, each once. Nodes with a partition id
    beyond the run's clients (a simulation federation larger than the run) are left idle.
    """
    deadline = time.monotonic() + wait_seconds
    while len(node_ids := sorted(grid.get_node_ids())) < n_clients:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(node_ids)} SuperNodes connected after {wait_seconds:.0f} s; this run has {n_clients} "
                f"clients and needs one SuperNode per client: in a simulation federation, "
                f'`flwr run . local --federation-config "num-supernodes={n_clients}"`; in a deployment, start '
                f"{n_clients} SuperNodes with partition ids 0..{n_clients - 1} (scripts/flower-deploy does)"
            )
        time.sleep(0.2)
    queries = [
        Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY, group_id="discovery")
        for node in node_ids
    ]
    replies = exchange(grid, queries, what="discovery")
    clients = {node: read_partition_content(reply.content) for node, reply in replies.items()}
    used = {node: c for node, c in clients.items() if c < n_clients}
    if sorted(used.values()) != list(range(n_clients)):
        raise RuntimeError(
            f"SuperNodes report partition ids {sorted(clients.values())}; this run has {n_clients} "
            f"clients and needs partition ids 0..{n_clients - 1}, one SuperNode each"
        )
    return {client: node for node, client in used.items()}


def train_contents(
    plan: RoundPlan, params: torch.Tensor, *, run_config: str, secagg_range: float | None = None
) -> list[RecordDict]:
    """Each sampled client's TRAIN content, in the plan's (ascending client-index) order."""
    return [
        train_content(
            TrainInstruction(
                params=params,
                round=plan.round,
                client=int(client),
                seed=seed,
                clip_norm=plan.clip_norm,
                run_config=run_config,
                local_dp=plan.local_dp,
                secagg_range=secagg_range,
            )
        )
        for client, seed in zip(plan.clients, plan.client_seeds)
    ]


def train_round(
    grid: Grid, plan: RoundPlan, params: torch.Tensor, *, nodes: dict[int, int], run_config: str, sent: dict
) -> list[Update]:
    """The sampled clients' updates, in the plan's (ascending client-index) order, as in-process.

    ``sent``: running totals of the replies' payload bytes and client-rounds (the record's upload cost)."""
    messages = [
        Message(content, dst_node_id=nodes[int(client)], message_type=MessageType.TRAIN, group_id=str(plan.round))
        for client, content in zip(plan.clients, train_contents(plan, params, run_config=run_config))
    ]
    replies = exchange(grid, messages, what=f"round {plan.round}")
    sent["bytes"] += sum(content_bytes(reply.content) for reply in replies.values())
    sent["client_rounds"] += len(replies)
    return [read_update_content(replies[nodes[int(client)]].content) for client in plan.clients]


def secure_round(aggregator: SecureAggregator, plan: RoundPlan, params: torch.Tensor, *, nodes, run_config: str):
    """The round's ``RoundSum`` through SecAgg+ (a lone or absent client: see ``SecureAggregator``)."""
    c = aggregator.settings.range_for(plan.clip_norm) if len(plan.clients) >= 2 else None
    contents = train_contents(plan, params, run_config=run_config, secagg_range=c)
    return aggregator.round_sum(plan, {nodes[int(client)]: content for client, content in zip(plan.clients, contents)})


def run_flower_rounds(
    grid: Grid,
    server: FederatedServer,
    *,
    n_clients: int,
    cfg: RunConfig,
    on_round=None,
    wait_seconds: float = NODE_WAIT_SECONDS,
) -> dict:
    """``run_inprocess`` over a Flower Grid; returns the engine's timing (seconds) for the record."""
    if os.environ.get(MESSAGE_LOG_ENV):
        grid = RecordingGrid(grid)
    started = time.perf_counter()
    nodes = discover_client_nodes(grid, n_clients=n_clients, wait_seconds=wait_seconds)
    discovered = time.perf_counter()
    log.info("%d clients on %d nodes (discovery %.1f s)", n_clients, len(nodes), discovered - started)
    run_config = run_config_text(cfg)

    def log_round(summary: dict) -> None:
        log.info("round %d: %d clients, train loss %s", summary["round"], summary["clients"], summary["train_loss"])

    timing = {"node_discovery_seconds": round(discovered - started, 3)}
    if cfg.federation.secagg:
        aggregator = SecureAggregator(
            grid=PollingGrid(grid, interval=PULL_INTERVAL_SECONDS, timeout=REPLY_TIMEOUT_SECONDS),
            settings=SecAggSettings.from_config(cfg.federation),
            size=server.params.numel(),
        )
        run_rounds(
            server,
            lambda plan: secure_round(aggregator, plan, server.params, nodes=nodes, run_config=run_config),
            on_round=on_round,
            after_round=log_round,
        )
        return {**timing, "secagg": aggregator.info()}
    sent = {"bytes": 0, "client_rounds": 0}
    run_rounds(
        server,
        lambda plan: train_round(grid, plan, server.params, nodes=nodes, run_config=run_config, sent=sent),
        on_round=on_round,
        after_round=log_round,
    )
    per_client = round(sent["bytes"] / sent["client_rounds"]) if sent["client_rounds"] else None
    return {**timing, "client_upload_bytes_per_round": per_client}
