"""The client side of federated training: one local update on one client's own data.

``local_update`` is shared by every engine (in-process, Flower simulation, Flower
deployment): engines only move parameters and updates, never the client's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from sandbox.federated.aggregate import Update, clip_update


@dataclass(frozen=True)
class LocalConfig:
    """Client training (Hydra keys ``federation.local_*``)."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 0.1


@dataclass(frozen=True)
class ClientData:
    """One client's featurised examples; they never leave the client."""

    tokens: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def local_update(params: torch.Tensor, data: ClientData, *, model: nn.Module, cfg: LocalConfig,
                 generator: torch.Generator, clip_norm: float | None = None) -> Update:
    """Train ``model`` from ``params`` on ``data`` with local SGD; return the delta (new − old).

    ``model`` is scratch space: its parameters are overwritten from ``params`` first, so one
    model serves every client. With ``clip_norm`` the client clips its own delta (client-side
    clipping) and reports only whether it was within the norm.
    """
    flat = params.clone()
    vector_to_parameters(flat, model.parameters())  # the model's parameters become views into ``flat``
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model.train()
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(data), generator=generator)
        for batch in order.split(cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(data.tokens[batch]), data.labels[batch])
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    with torch.no_grad():  # SGD stepped the views in place, so ``flat`` holds the new parameters
        delta = flat - params
    unclipped = True
    if clip_norm is not None:
        delta, unclipped = clip_update(delta, clip_norm)
    return Update(delta=delta, n_examples=len(data), loss=sum(losses) / max(1, len(losses)),
                  unclipped=unclipped)
