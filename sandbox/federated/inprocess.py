"""The in-process engine: the shared client and server functions, called in one process.

Clients of a round are trained together, step by step (``BatchedLocalTrainer``, chunks of
``federation.client_batch`` clients), or one after another on one scratch model
(``LocalTrainer`` resets the few coordinates a client changed). No model copy per user is
kept, and the server folds each sparse update into a running sum, so memory does not grow
with the number of users.
"""

from __future__ import annotations

import torch
from torch import nn

from sandbox.federated.batched import BatchedLocalTrainer, supports_batching
from sandbox.federated.client import LocalConfig
from sandbox.federated.client_dp import make_trainer
from sandbox.federated.clients import ClientPartition
from sandbox.federated.rounds import RoundCallback, RoundSum, run_rounds
from sandbox.federated.server import FederatedServer
from sandbox.tasks.base import Examples
from sandbox.train.threads import single_threaded


def run_inprocess(
    server: FederatedServer,
    *,
    partition: ClientPartition,
    examples: Examples,
    model: nn.Module,
    local: LocalConfig,
    on_round: RoundCallback | None = None,
    client_batch: int = 64,
) -> None:
    """Run rounds until the server stops (rounds done, or the privacy budget reached).

    With ``client_batch`` > 0 (``federation.client_batch``), plain local SGD runs up to that
    many clients together (``BatchedLocalTrainer``: the same updates as one at a time, up to
    float rounding); client-level DP-SGD and models without ``forward_stacked`` go one
    client at a time. Runs torch single-threaded (``sandbox.train.threads``).
    """
    with single_threaded():
        _rounds(
            server,
            partition=partition,
            examples=examples,
            model=model,
            local=local,
            on_round=on_round,
            client_batch=client_batch,
        )


def _rounds(server, *, partition, examples, model, local, on_round, client_batch) -> None:
    batched = client_batch > 0 and server.local_dp is None and supports_batching(model)
    trainer = (
        BatchedLocalTrainer(model, local, chunk=client_batch)
        if batched
        else make_trainer(model, local, server.local_dp)
    )

    # without observers the server needs only the round's sum; clients clipped at the server's norm
    summed = batched and not server.observers and (server.dp is None or server.dp.clipping_site == "client")

    def updates_of(plan):
        trainer.load(server.params)
        datas = partition.datas(plan.clients, examples)
        generators = [torch.Generator().manual_seed(seed) for seed in plan.client_seeds]
        if summed:
            total, weight, loss_sum, n_unclipped = trainer.round_sum(
                datas, generators, clip_norm=plan.clip_norm, weighted=server.dp is None
            )
            return RoundSum(
                total=total, clients=plan.clients, weight=weight, loss_sum=loss_sum, n_unclipped=n_unclipped
            )
        if batched:  # trained longest client first; handed over in the plan's order (run_rounds files them so)
            done = dict(trainer.updates(datas, generators, clip_norm=plan.clip_norm))
            return [done[i] for i in range(len(datas))]
        return (trainer.update(d, generator=g, clip_norm=plan.clip_norm) for d, g in zip(datas, generators))

    run_rounds(server, updates_of, on_round=on_round)
