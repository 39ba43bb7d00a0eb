"""The in-process engine: the shared client and server functions, called in one process.

One scratch model serves every client (no model copy per user is kept), and the server
folds each update into a running sum, so memory does not grow with the number of users.
Clients whose local update is a single full-batch SGD step (most users: few messages) are
batched, CHUNK at a time, with ``torch.func.vmap``; the rest run ``local_update`` one by one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from sandbox.federated.client import LocalConfig, local_update, local_updates_one_step, takes_one_step
from sandbox.federated.clients import ClientPartition
from sandbox.federated.server import FederatedServer
from sandbox.tasks.emoji import EmojiExamples

CHUNK = 32  # clients batched together: memory is CHUNK × n_params floats

RoundCallback = Callable[[dict, torch.Tensor], None]  # (round summary, global params)


def run_inprocess(server: FederatedServer, *, partition: ClientPartition, examples: EmojiExamples,
                  model: nn.Module, local: LocalConfig, on_round: RoundCallback | None = None) -> None:
    """Run rounds until the server stops (rounds done, or the privacy budget reached).

    Runs torch single-threaded: per-client tensors are small, and intra-op threads on a
    busy 2-core machine made rounds up to 30× slower (measured), with identical results.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _rounds(server, partition=partition, examples=examples, model=model, local=local, on_round=on_round)
    finally:
        torch.set_num_threads(threads)


def _rounds(server, *, partition, examples, model, local, on_round) -> None:
    while (plan := server.next_round()) is not None:
        for start in range(0, len(plan.clients), CHUNK):
            clients = [int(c) for c in plan.clients[start : start + CHUNK]]
            seeds = plan.client_seeds[start : start + CHUNK]
            data = [partition.data(c, examples) for c in clients]
            for update in _chunk_updates(server.params, data, seeds, model=model, local=local,
                                         clip_norm=plan.clip_norm):
                server.receive(update)  # in client order, as every engine does
        summary = server.finish_round()
        if on_round is not None:
            on_round(summary, server.params)


def _chunk_updates(params, data, seeds, *, model, local, clip_norm) -> list:
    """Updates of consecutive clients: one-step clients batched together, the others one by one."""
    one_step = [i for i, d in enumerate(data) if takes_one_step(d, local)]
    updates = dict(zip(one_step, local_updates_one_step(params, [data[i] for i in one_step], model=model,
                                                        cfg=local, clip_norm=clip_norm))) if one_step else {}
    for i, (d, seed) in enumerate(zip(data, seeds)):
        if i not in updates:
            updates[i] = local_update(params, d, model=model, cfg=local,
                                      generator=torch.Generator().manual_seed(seed), clip_norm=clip_norm)
    return [updates[i] for i in range(len(data))]
