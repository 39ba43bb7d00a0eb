"""Local SGD for many clients at once: the in-process engine's fast path.

``BatchedLocalTrainer`` gives each client of a round the same update as ``LocalTrainer``
(same shuffles from the same per-client generators, same batches, same plain-SGD steps),
but runs the clients *step-synchronously*: step t of every client that has a step t is
one batched forward/backward. Each client gets its own copy of only the embedding rows it
looks up (a [clients, rows, dim] table) and of the small dense layers; nothing is shared
between clients, so they stay independent exactly as in the loop.

Clients are sorted by their number of steps and taken in chunks of ``chunk`` clients, so
memory is bounded by the chunk (not by the number of clients per round) and the active
clients at step t are a prefix of the chunk (slices, no copies). The results equal the
loop's up to float summation order (≈1e-7; a test checks ≤ 1e-6).

It needs the model to offer ``forward_stacked`` (``EmojiModel`` does); other models and
client-level DP-SGD use the one-client-at-a-time trainers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sandbox.federated.aggregate import SparseDelta, Update, clip_update
from sandbox.federated.client import ClientData, LocalConfig, ScratchParams


@dataclass(frozen=True)
class _Trained:
    """A chunk's local training: client c's embedding rows are pairs block[c]:block[c+1]."""

    pair_client: torch.Tensor  # [P] the client of each (client, row) pair
    pair_row: torch.Tensor  # [P] its embedding row
    block: torch.Tensor  # [n + 1]
    emb_delta: torch.Tensor  # [P, dim] new − old of each pair's row
    dense_delta: torch.Tensor  # [n, dense size] new − old of the other parameters
    loss_sum: torch.Tensor  # [n] sum of the per-step mean losses
    steps: torch.Tensor  # [n] steps each client took


class _Steps:
    """A chunk's batches: step t trains the first ``active[t]`` clients on ``example[t]`` ([n, bsz] rows)."""

    def __init__(self, *, example, weight, slot, tokens, labels):
        self.example, self.weight, self.slot, self.tokens, self.labels = example, weight, slot, tokens, labels
        counts = weight.sum(2)
        self.active = (counts > 0).sum(1)
        self.scale = weight / counts.clamp(min=1).unsqueeze(2)  # a client's batch mean: weight / its batch size
        self.length = (tokens != 0).sum(1)  # tokens are left-aligned: positions ≥ a row's length are padding


def supports_batching(model: nn.Module) -> bool:
    """Whether ``BatchedLocalTrainer`` can train this model: one embedding table first, ``forward_stacked``."""
    params = list(model.parameters())
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    return hasattr(model, "forward_stacked") and len(embeddings) == 1 and params and params[0] is embeddings[0].weight


class BatchedLocalTrainer(ScratchParams):
    """``LocalTrainer``'s updates for a list of clients, computed together (see the module docstring)."""

    def __init__(self, model: nn.Module, cfg: LocalConfig, *, chunk: int = 64, closed_form: bool = True):
        if not supports_batching(model):
            raise ValueError(
                f"{type(model).__name__} cannot be trained client-batched "
                "(needs one leading nn.Embedding and forward_stacked)"
            )
        if chunk < 1:
            raise ValueError(f"chunk must be ≥ 1, got {chunk}")
        super().__init__(model)
        self.cfg, self.chunk = cfg, chunk
        # the model's closed-form gradients where it offers them (loss_grads_stacked); autograd otherwise
        self.closed_form = closed_form and hasattr(model, "loss_grads_stacked")
        params = list(model.parameters())
        self._emb_shape = params[0].shape  # [buckets, dim]
        self._dense_shapes = [p.shape for p in params[1:]]
        self._emb_size = params[0].numel()

    def updates(
        self, datas: Sequence[ClientData], generators: Sequence[torch.Generator], *, clip_norm: float | None = None
    ) -> Iterator[tuple[int, Update]]:
        """Yield (position in ``datas``, update) for every client, chunk by chunk (not in input order)."""
        if self._global is None:
            raise RuntimeError("BatchedLocalTrainer.updates before load(params)")
        if len(datas) != len(generators):
            raise ValueError(f"{len(datas)} clients but {len(generators)} generators")
        order = self._longest_first(datas)
        for start in range(0, len(order), self.chunk):
            members = order[start : start + self.chunk]
            trained = self._train(datas=[datas[i] for i in members], generators=[generators[i] for i in members])
            yield from zip(members, self._updates_of(trained, [datas[i] for i in members], clip_norm))

    def _longest_first(self, datas: Sequence[ClientData]) -> list[int]:
        """Clients by decreasing number of local steps (stable): the active clients at step t are a prefix."""
        bsz = self.cfg.batch_size
        return sorted(range(len(datas)), key=lambda i: len(datas[i]) // -bsz)  # −⌈m / B⌉

    def _plan(
        self, sizes: torch.Tensor, first: torch.Tensor, generators: Sequence[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's batches: [steps, clients, batch] example indices and weights (1 = real, 0 = none).

        Each client's order is drawn exactly as ``LocalTrainer.update`` draws it (one ``randperm`` per
        epoch from its own generator, split into batches); the layout is computed for all clients at
        once. A short last batch, and every step after a client's last, holds the client's first
        example at weight 0 (its gradient is exactly zero).
        """
        n, bsz, epochs = len(sizes), self.cfg.batch_size, self.cfg.epochs
        per_epoch = -(-sizes // bsz)  # steps per epoch
        perms = torch.cat(
            [torch.randperm(m, generator=g) for m, g in zip(sizes.tolist(), generators) for _ in range(epochs)]
        )
        segment_len = sizes.repeat_interleave(epochs)  # one segment per (client, epoch), in draw order
        segment = torch.repeat_interleave(torch.arange(n * epochs), segment_len)
        position = torch.arange(len(perms)) - (torch.cumsum(segment_len, 0) - segment_len)[segment]
        client, epoch = segment // epochs, segment % epochs
        step, slot = epoch * per_epoch[client] + position // bsz, position % bsz
        steps = int((per_epoch * epochs).max())
        example = first.view(1, n, 1).expand(steps, n, bsz).clone()
        weight = torch.zeros(steps, n, bsz)
        example[step, client, slot] = perms + first[client]
        weight[step, client, slot] = 1.0
        return example, weight

    def round_sum(
        self,
        datas: Sequence[ClientData],
        generators: Sequence[torch.Generator],
        *,
        clip_norm: float | None,
        weighted: bool,
    ) -> tuple[torch.Tensor, float, float, int]:
        """The sum the server would fold from these clients' updates, without one ``Update`` per client.

        Each client's update is clipped to ``clip_norm`` (if given) and added with weight 1, or with its
        example count when ``weighted`` (FedAvg). Per chunk: one norm computation for all its clients,
        one ``index_add_`` of their embedding rows and one matrix product for the dense layers.
        Returns (total, weight, loss_sum, n_unclipped) as ``rounds.RoundSum`` holds them; equal to
        folding ``updates`` one by one up to float summation order (a test checks ≤ 1e-6).
        """
        if self._global is None:
            raise RuntimeError("BatchedLocalTrainer.round_sum before load(params)")
        total = torch.zeros(self.size)
        weight, loss_sum, n_unclipped = 0.0, 0.0, 0
        order = self._longest_first(datas)
        n_buckets, dim = self._emb_shape
        emb_total = total[: self._emb_size].view(n_buckets, dim)
        for start in range(0, len(order), self.chunk):
            members = order[start : start + self.chunk]
            trained = self._train(datas=[datas[i] for i in members], generators=[generators[i] for i in members])
            emb_delta, dense_delta = trained.emb_delta, trained.dense_delta
            norms = (
                torch.zeros(len(members), dtype=emb_delta.dtype).index_add_(
                    0, trained.pair_client, emb_delta.square().sum(1)
                )
                + dense_delta.square().sum(1)
            ).sqrt()
            coefficient = torch.ones(len(members))
            if clip_norm is not None:
                within = norms <= clip_norm
                n_unclipped += int(within.sum())
                coefficient = torch.where(within, coefficient, clip_norm / norms)
            else:
                n_unclipped += len(members)
            sizes = torch.tensor([float(len(datas[i])) for i in members])
            if weighted:
                coefficient = coefficient * sizes
                weight += float(sizes.sum())
            else:
                weight += float(len(members))
            emb_total.index_add_(0, trained.pair_row, emb_delta * coefficient[trained.pair_client].unsqueeze(1))
            total[self._emb_size :].add_(coefficient @ dense_delta)
            loss_sum += float((trained.loss_sum / trained.steps).sum())
        return total, weight, loss_sum, n_unclipped

    def _updates_of(self, trained: _Trained, datas: list[ClientData], clip_norm: float | None) -> list[Update]:
        dim = self._emb_shape[1]
        out = []
        with torch.no_grad():
            emb_index = (trained.pair_row * dim).unsqueeze(1) + torch.arange(dim)
            dense_index = torch.arange(self._emb_size, self.size)
            block = trained.block
            for c, d in enumerate(datas):
                lo, hi = int(block[c]), int(block[c + 1])
                delta = SparseDelta(
                    index=torch.cat([emb_index[lo:hi].reshape(-1), dense_index]),
                    values=torch.cat([trained.emb_delta[lo:hi].reshape(-1), trained.dense_delta[c]]),
                    size=self.size,
                )
                unclipped = True
                if clip_norm is not None:
                    delta, unclipped = clip_update(delta, clip_norm)
                out.append(
                    Update(
                        delta=delta,
                        n_examples=len(d),
                        loss=float(trained.loss_sum[c]) / int(trained.steps[c]),
                        unclipped=unclipped,
                    )
                )
        return out

    def _train(self, *, datas: list[ClientData], generators: Sequence[torch.Generator]) -> _Trained:
        """Local SGD for a chunk of clients (longest first); their deltas, row-sparse, not yet clipped."""
        n, bsz = len(datas), self.cfg.batch_size
        n_buckets, dim = self._emb_shape
        # every (client, bucket) pair gets its own table row: client c's rows are a sorted block
        all_tokens = torch.cat([d.tokens for d in datas])
        all_labels = torch.cat([d.labels for d in datas])
        sizes = torch.tensor([len(d) for d in datas])
        first = torch.cumsum(sizes, 0) - sizes  # client c's examples start at first[c] in all_tokens
        client_of = torch.repeat_interleave(torch.arange(n), sizes)
        pairs, slot = torch.unique(client_of.unsqueeze(1) * n_buckets + all_tokens, return_inverse=True)
        pair_client, pair_row = pairs // n_buckets, pairs % n_buckets
        block = torch.searchsorted(pair_client, torch.arange(n + 1))  # client c's pairs: block[c]:block[c+1]
        global_emb = self._global[: self._emb_size].view(n_buckets, dim)
        start = global_emb[pair_row]
        table = start.clone()
        # the other parameters, one row per client; ``dense`` are views of it in ``parameters()`` order
        flat = self._global[self._emb_size :].expand(n, -1).clone()
        dense, offset = [], 0
        for shape in self._dense_shapes:
            size = torch.Size(shape).numel()
            dense.append(flat[:, offset : offset + size].view(n, *shape))
            offset += size
        example, weight = self._plan(sizes, first, generators)  # [steps, n, bsz]
        steps = _Steps(example=example, weight=weight, slot=slot, tokens=all_tokens, labels=all_labels)
        run = self._steps_closed_form if self.closed_form else self._steps_autograd
        loss_sum = run(steps, table, dense)
        with torch.no_grad():
            return _Trained(
                pair_client=pair_client,
                pair_row=pair_row,
                block=block,
                emb_delta=table - start,
                dense_delta=flat - self._global[self._emb_size :],
                loss_sum=loss_sum,
                steps=-(-sizes // bsz) * self.cfg.epochs,
            )

    @torch.no_grad()
    def _steps_closed_form(self, steps: _Steps, table: torch.Tensor, dense: list[torch.Tensor]) -> torch.Tensor:
        """SGD on ``table`` and ``dense`` in place with the model's own gradients (``loss_grads_stacked``)."""
        lr, loss_sum = self.cfg.lr, torch.zeros(steps.weight.shape[1])
        pool = self.model.pooling_weights(steps.tokens)
        # a step's width: its longest real example (weight-0 slots may be cut: their gradient is 0)
        widths = (steps.length[steps.example] * (steps.weight > 0)).flatten(1).amax(1).clamp(min=1).tolist()
        for t, k in enumerate(steps.active.tolist()):
            rows, w = steps.example[t, :k], widths[t]
            per_client, index, row_grad, grads = self.model.loss_grads_stacked(
                table,
                [p[:k] for p in dense],
                steps.slot[rows, :w],
                pool[rows, :w],
                steps.labels[rows],
                steps.scale[t, :k],
            )
            table.index_add_(0, index, row_grad, alpha=-lr)
            for p, gp in zip(dense, grads):
                p[:k].add_(gp, alpha=-lr)
            loss_sum[:k] += per_client
        return loss_sum

    def _steps_autograd(self, steps: _Steps, table: torch.Tensor, dense: list[torch.Tensor]) -> torch.Tensor:
        """The same steps through ``forward_stacked`` and autograd (the reference for the closed form)."""
        lr, loss_sum = self.cfg.lr, torch.zeros(steps.weight.shape[1])
        table.requires_grad_()
        for p in dense:
            p.requires_grad_()
        bsz = steps.weight.shape[2]
        for t, k in enumerate(steps.active.tolist()):
            rows = steps.example[t, :k]
            w = max(1, int(steps.length[rows].max()))
            logits = self.model.forward_stacked(
                table, [p[:k] for p in dense], steps.slot[rows, :w], steps.tokens[rows, :w]
            )
            ce = nn.functional.cross_entropy(
                logits.reshape(k * bsz, -1), steps.labels[rows].reshape(-1), reduction="none"
            ).view(k, bsz)
            per_client = (ce * steps.scale[t, :k]).sum(1)
            grads = torch.autograd.grad(per_client.sum(), [table, *dense])
            with torch.no_grad():
                g = grads[0]  # row-sparse, uncoalesced: index_add_ sums repeated rows
                table.index_add_(0, g._indices()[0], g._values(), alpha=-lr)
                for p, gp in zip(dense, grads[1:]):
                    p[:k].add_(gp[:k], alpha=-lr)
                loss_sum[:k] += per_client.detach()
        table.requires_grad_(False)
        for p in dense:
            p.requires_grad_(False)
        return loss_sum
