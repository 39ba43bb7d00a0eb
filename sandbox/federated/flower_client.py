"""The Flower ClientApp (Message API): one client's local update, on its own data.

It runs the in-process engine's client trainer (``make_trainer``). A client rebuilds its own
data from the run config it is told (the synthetic corpus is a function of the config), keeps
it per process, and picks its own rows by its partition id (node config ``partition-id``).
Only the update goes back (``flower_messages``: exactly what crosses). Under client-level
DP-SGD with secure noise the client draws its noise state itself; it never crosses the wire.
Under secure aggregation (``federation.secagg``) Flower's ``secaggplus_mod`` runs the SecAgg+
stages around the train handler and masks what it returns (``flower_secagg``); the mod is
guarded (``secagg_only_mod``) so that runs without SecAgg+ pass by it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from torch import nn

from sandbox.federated.client import LocalConfig
from sandbox.federated.client_dp import LocalDPSGD, make_trainer
from sandbox.federated.clients import ClientPartition, partition_clients
from sandbox.federated.flower_capture import message_log_mod
from sandbox.federated.flower_messages import (
    partition_content,
    read_train_content,
    run_config_from_text,
    update_content,
)
from sandbox.federated.flower_secagg import secagg_only_mod, secure_reply_content
from sandbox.prepare import Seeds, prepare
from sandbox.tasks.base import Examples


@dataclass(frozen=True)
class ClientSide:
    """What a client process holds: its training rows (and everyone's, in this sandbox), a scratch model."""

    examples: Examples
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
    return ClientSide(
        examples=data.train, partition=partition, model=data.new_model(cfg, seeds), local=cfg.federation.local
    )


@functools.lru_cache(maxsize=1)
def client_trainer(run_config: str, local_dp: LocalDPSGD | None):
    """The process' client trainer on its scratch model (``make_trainer``, as in-process)."""
    side = client_side(run_config)
    return make_trainer(side.model, side.local, local_dp)


# the log mod outermost: it logs what crosses (under SecAgg+: the masked vector, not the update)
client_app = ClientApp(mods=[message_log_mod, secagg_only_mod])


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
    update = trainer.update(
        side.partition.data(client, side.examples),
        generator=torch.Generator().manual_seed(task.seed),
        clip_norm=task.clip_norm,
    )
    if task.secagg_range is not None:  # SecAgg+'s collect stage: the mod masks this reply's vector
        return Message(secure_reply_content(update, task.secagg_range), reply_to=msg)
    return Message(update_content(update), reply_to=msg)
