"""The client side of federated training: one local update on one client's own data.

``LocalTrainer`` (and ``client_dp.PrivateLocalTrainer``) is shared by every engine (in-process, Flower simulation, Flower
deployment): engines only move parameters and updates, never the client's messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from sandbox.config.schema import LocalConfig
from sandbox.federated.aggregate import SparseDelta, Update, clip_update


@dataclass(frozen=True)
class ClientData:
    """One client's featurised examples; they never leave the client."""

    tokens: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class ScratchParams:
    """A scratch model whose parameters are views into a work copy of the loaded global parameters."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.size = sum(p.numel() for p in model.parameters())
        self._global: torch.Tensor | None = None
        self._work: torch.Tensor | None = None

    def load(self, params: torch.Tensor) -> None:
        """Start from these global parameters (not modified; keep them unchanged while in use)."""
        if params.shape != (self.size,):
            raise ValueError(f"expected {self.size} parameters, got {tuple(params.shape)}")
        self._global = params
        self._work = params.detach().clone()
        vector_to_parameters(self._work, self.model.parameters())  # parameters become views into _work
        self.model.train()


class LocalTrainer(ScratchParams):
    """Local SGD for one client after another on one scratch model, touching only what a client can change.

    ``load(params)`` copies the global parameters into a work vector once (per round); the
    scratch model's parameters are views into it. Each ``update`` trains on one client's data
    with sparse embedding gradients, so an SGD step changes only the embedding rows of the
    client's tokens plus the dense layers; the delta is read off those coordinates and they
    are then reset to the global values. Cost per client is independent of the embedding
    table's size, and no model copy per client is kept.

    Plain SGD (no momentum, no weight decay) is what makes "untouched coordinates are
    unchanged" exact.
    """

    def __init__(self, model: nn.Module, cfg: LocalConfig):
        super().__init__(model)
        self.cfg = cfg
        self._layout: list[tuple[nn.Parameter, int, bool]] = []  # (parameter, flat offset, row-sparse?)
        row_sparse = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                m.sparse = True  # row-sparse gradients: only looked-up rows
        offset = 0
        for p in model.parameters():
            self._layout.append((p, offset, id(p) in row_sparse))
            offset += p.numel()
        self._params = [p for p, _, _ in self._layout]
        self._sparse = [i for i, (_, _, sparse) in enumerate(self._layout) if sparse]
        self._dense = [i for i, (_, _, sparse) in enumerate(self._layout) if not sparse]
        self._dense_index = {
            i: torch.arange(o, o + p.numel()) for i, (p, o, sparse) in enumerate(self._layout) if not sparse
        }

    def update(self, data: ClientData, *, generator: torch.Generator, clip_norm: float | None = None) -> Update:
        """Local SGD on ``data`` from the loaded parameters; the delta (new − old) as a ``SparseDelta``.

        With ``clip_norm`` the client clips its own delta (client-side clipping) and reports
        only whether it was within the norm.
        """
        if self._work is None:
            raise RuntimeError("LocalTrainer.update before load(params)")
        model, cfg = self.model, self.cfg
        rows: dict[int, list[torch.Tensor]] = {}
        loss_sum, steps = torch.zeros(()), 0
        for _ in range(cfg.epochs):
            order = torch.randperm(len(data), generator=generator)
            for batch in order.split(cfg.batch_size):
                for p in self._params:
                    p.grad = None
                loss = nn.functional.cross_entropy(model(data.tokens[batch]), data.labels[batch])
                loss.backward()
                with torch.no_grad():
                    for i in self._sparse:
                        p = self._params[i]
                        rows.setdefault(i, []).append(p.grad._indices()[0])
                        p.add_(p.grad, alpha=-cfg.lr)
                    for i in self._dense:
                        self._params[i].add_(self._params[i].grad, alpha=-cfg.lr)
                    loss_sum += loss
                steps += 1
        index = self._touched(rows)
        with torch.no_grad():
            start = self._global[index]
            delta = SparseDelta(index=index, values=self._work[index] - start, size=self.size)
            self._work[index] = start  # back to the global parameters for the next client
        unclipped = True
        if clip_norm is not None:
            delta, unclipped = clip_update(delta, clip_norm)
        return Update(delta=delta, n_examples=len(data), loss=float(loss_sum) / max(1, steps), unclipped=unclipped)

    def _touched(self, rows: dict[int, list[torch.Tensor]]) -> torch.Tensor:
        """Flat coordinates the SGD steps may have changed, sorted: looked-up rows and dense parameters."""
        parts = []  # in parameter order, each part sorted: the concatenation is sorted
        for i, (p, offset, sparse) in enumerate(self._layout):
            if not sparse:
                parts.append(self._dense_index[i])
            elif i in rows:
                width = p.shape[1]
                used = torch.unique(torch.cat(rows[i]))  # sorted
                parts.append((offset + used.unsqueeze(1) * width + torch.arange(width)).reshape(-1))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def local_update(
    params: torch.Tensor,
    data: ClientData,
    *,
    model: nn.Module,
    cfg: LocalConfig,
    generator: torch.Generator,
    clip_norm: float | None = None,
) -> Update:
    """One client's local update from ``params``: ``LocalTrainer`` for a single client.

    ``model`` is scratch space: its parameters are overwritten from ``params``.
    """
    trainer = LocalTrainer(model, cfg)
    trainer.load(params)
    return trainer.update(data, generator=generator, clip_norm=clip_norm)
