"""The in-process engine: the shared client and server functions, called in one process.

One scratch model serves every client (no model copy per user is kept; ``LocalTrainer``
resets the few coordinates a client changed), and the server folds each sparse update into
a running sum, so memory does not grow with the number of users.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from sandbox.federated.client import LocalConfig
from sandbox.federated.client_dp import make_trainer
from sandbox.federated.clients import ClientPartition
from sandbox.federated.server import FederatedServer
from sandbox.train.threads import single_threaded
from sandbox.tasks.emoji import EmojiExamples

RoundCallback = Callable[[dict, torch.Tensor], None]  # (round summary, global params)


def run_inprocess(server: FederatedServer, *, partition: ClientPartition, examples: EmojiExamples,
                  model: nn.Module, local: LocalConfig, on_round: RoundCallback | None = None) -> None:
    """Run rounds until the server stops (rounds done, or the privacy budget reached).

    Runs torch single-threaded (``sandbox.train.threads``).
    """
    with single_threaded():
        _rounds(server, partition=partition, examples=examples, model=model, local=local, on_round=on_round)


def _rounds(server, *, partition, examples, model, local, on_round) -> None:
    trainer = make_trainer(model, local, server.local_dp)
    while (plan := server.next_round()) is not None:
        trainer.load(server.params)
        for client, seed in zip(plan.clients, plan.client_seeds):
            update = trainer.update(partition.data(int(client), examples),
                                    generator=torch.Generator().manual_seed(seed), clip_norm=plan.clip_norm)
            server.receive(update)
        summary = server.finish_round()
        if on_round is not None:
            on_round(summary, server.params)
