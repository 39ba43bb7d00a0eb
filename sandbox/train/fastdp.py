"""Per-example clipping for the hashed bag-of-words model without per-example gradients.

DP-SGD needs each example's gradient norm, to clip it, and then only the *sum* of the clipped
gradients. For ``HashedBagModel`` (``sandbox.tasks.text``: embedding → masked mean → Linear →
ReLU → Linear) both follow from one forward and one backward pass written out by hand:

* a Linear layer whose input a_i is a vector (no sequence dimension) has per-example gradient
  g_i a_iᵀ (and g_i for the bias), whose squared norm is ‖g_i‖²·(‖a_i‖² + 1) (the ghost-norm
  identity, Goodfellow 2015; Li et al. 2022);
* the embedding table's gradient for example i has, in row r, (n_ir / L_i)·d_i, where d_i is the
  gradient at the pooled vector, L_i the number of non-padding tokens and n_ir how many of them
  are r; its squared norm is ‖d_i‖²·Σ_r (n_ir / L_i)² (repeated tokens add up before squaring).

The clipped sum is then one weighted matrix product per Linear layer and one ``index_add_`` for
the table, which is what a plain backward pass costs. Clip factors are Opacus' own formula,
min(1, C / (‖g_i‖ + 1e-6)); per-example losses are cross-entropy, as in central training. The
result equals Opacus' materialised per-sample gradients (``GradSampleModule``) clipped and
summed (tests/train/test_fastdp.py, within 1e-5 relative).

Not used by ``train_dpsgd`` yet (issue 17, item 4): it is the kernel, tested and benchmarked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sandbox.tasks.base import PAD
from sandbox.tasks.text import HashedBagModel

OPACUS_NORM_EPS = 1e-6  # Opacus' optimizer: clip factor = max_grad_norm / (norm + 1e-6), at most 1


@dataclass(frozen=True)
class ClippedBatch:
    """One batch's per-example norms, clip factors and the clipped gradients' sum (in ``parameters()`` order)."""

    norms: torch.Tensor  # [B]
    factors: torch.Tensor  # [B]
    grads: tuple[torch.Tensor, ...]  # summed clipped gradients, shaped like the model's parameters
    loss: torch.Tensor  # [B] per-example losses


def supports_fast_clipping(model: nn.Module) -> bool:
    """Whether ``clipped_gradient_sum`` knows this model's structure exactly."""
    if type(model) is not HashedBagModel:
        return False
    mlp = model.mlp
    return (
        len(mlp) == 3
        and isinstance(mlp[0], nn.Linear)
        and isinstance(mlp[1], nn.ReLU)
        and isinstance(mlp[2], nn.Linear)
        and mlp[0].bias is not None
        and mlp[2].bias is not None
    )


@torch.no_grad()
def clipped_gradient_sum(
    model: HashedBagModel,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    clip_norm: float,
    into: tuple[torch.Tensor, ...] | None = None,
) -> ClippedBatch:
    """Σ_i clip_C(∇ℓ_i) for cross-entropy ℓ_i of each example, without materialising any ∇ℓ_i.

    ``into``: tensors shaped like the parameters (e.g. the step's noise) that the sums are added to
    in place and returned as ``grads``, sparing one dense table-sized buffer and one addition."""
    if not supports_fast_clipping(model):
        raise TypeError(f"{type(model).__name__} has no fast per-example clipping (HashedBagModel only)")
    table = model.embedding.weight
    lin1, lin2 = model.mlp[0], model.mlp[2]
    mask = tokens != PAD
    lengths = mask.sum(1)
    inv_len = 1.0 / lengths.clamp(min=1).to(table.dtype)
    # forward, as HashedBagModel.forward computes it
    flat = tokens[mask]  # the non-padding tokens, row by row
    row_of = torch.repeat_interleave(torch.arange(len(tokens)), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    pooled = nn.functional.embedding_bag(flat, table, starts, mode="sum", per_sample_weights=inv_len[row_of])  # a_i
    pre = torch.addmm(lin1.bias, pooled, lin1.weight.t())
    hidden = pre.clamp(min=0)
    logits = torch.addmm(lin2.bias, hidden, lin2.weight.t())
    log_p = torch.log_softmax(logits, 1)
    loss = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    # backward of each example's own loss
    d_logits = log_p.exp()
    d_logits[torch.arange(len(labels)), labels] -= 1.0
    d_pre = (d_logits @ lin2.weight) * (pre > 0)
    d_pooled = d_pre @ lin1.weight
    # per-example squared norms, layer by layer
    pairs, counts = torch.unique(row_of * table.shape[0] + flat, return_counts=True)  # n_ir for each (i, r)
    repeats = torch.zeros(len(tokens), dtype=table.dtype).index_add_(
        0, pairs // table.shape[0], counts.to(table.dtype).square()
    )  # Σ_r n_ir²
    sq = (
        d_pooled.square().sum(1) * repeats * inv_len.square()
        + d_pre.square().sum(1) * (pooled.square().sum(1) + 1.0)
        + d_logits.square().sum(1) * (hidden.square().sum(1) + 1.0)
    )
    norms = sq.sqrt()
    factors = (clip_norm / (norms + OPACUS_NORM_EPS)).clamp(max=1.0)
    # the clipped sum: every per-example gradient is linear in its backward signal
    w_logits, w_pre = d_logits * factors.unsqueeze(1), d_pre * factors.unsqueeze(1)
    row_values = d_pooled * (factors * inv_len).unsqueeze(1)  # each of row i's tokens gets this
    if into is None:
        into = tuple(torch.zeros_like(p) for p in (table, lin1.weight, lin1.bias, lin2.weight, lin2.bias))
    g_table, g_w1, g_b1, g_w2, g_b2 = into
    g_table.index_add_(0, flat, row_values[row_of])
    g_w1.addmm_(w_pre.t(), pooled)
    g_b1.add_(w_pre.sum(0))
    g_w2.addmm_(w_logits.t(), hidden)
    g_b2.add_(w_logits.sum(0))
    grads = (g_table, g_w1, g_b1, g_w2, g_b2)
    return ClippedBatch(norms=norms, factors=factors, grads=grads, loss=loss)
