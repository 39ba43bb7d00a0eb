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


def takes_one_step(data: ClientData, cfg: LocalConfig) -> bool:
    """Whether ``local_update`` runs exactly one SGD step on the whole of ``data``."""
    return cfg.epochs == 1 and 0 < len(data) <= cfg.batch_size


def local_updates_one_step(params: torch.Tensor, clients: list[ClientData], *, model: nn.Module,
                           cfg: LocalConfig, clip_norm: float | None = None) -> list[Update]:
    """``local_update`` for several clients that each take one full-batch step, in one batched pass.

    One step from ``params`` is delta = −lr·∇(mean loss on the client's data), so the
    clients' gradients can be taken together with ``torch.func.vmap`` over padded, weighted
    batches. Equal to ``local_update`` up to float rounding (a test checks it); the in-process
    engine uses it to batch across clients.
    """
    assert all(takes_one_step(c, cfg) for c in clients), "every client must take exactly one step"
    from torch.func import functional_call, grad, vmap

    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = dict(zip(names, (t.view(s) for t, s in zip(params.split([s.numel() for s in shapes]), shapes))))
    width = max(len(c) for c in clients)
    tokens = torch.zeros((len(clients), width, clients[0].tokens.shape[1]), dtype=torch.long)
    labels = torch.zeros((len(clients), width), dtype=torch.long)
    weights = torch.zeros((len(clients), width))
    for i, c in enumerate(clients):
        tokens[i, : len(c)], labels[i, : len(c)], weights[i, : len(c)] = c.tokens, c.labels, 1.0 / len(c)

    def loss(p, tok, lab, w):
        return (nn.functional.cross_entropy(functional_call(model, p, (tok,)), lab, reduction="none") * w).sum()

    grads = vmap(grad(loss), in_dims=(None, 0, 0, 0))(flat, tokens, labels, weights)
    deltas = torch.cat([grads[n].reshape(len(clients), -1) for n in names], dim=1).mul_(-cfg.lr)
    with torch.no_grad():
        losses = vmap(loss, in_dims=(None, 0, 0, 0))(flat, tokens, labels, weights)
    updates = []
    for delta, c, l in zip(deltas, clients, losses.tolist()):
        unclipped = True
        if clip_norm is not None:
            delta, unclipped = clip_update(delta, clip_norm)
        updates.append(Update(delta=delta, n_examples=len(c), loss=l, unclipped=unclipped))
    return updates
