"""Client-batched local SGD gives every client the update ``LocalTrainer`` gives it alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from sandbox.federated.aggregate import add_delta, clip_update
from sandbox.federated.batched import BatchedLocalTrainer, supports_batching
from sandbox.federated.client import ClientData, LocalConfig, LocalTrainer
from sandbox.tasks import emoji

CFG = emoji.EmojiTaskConfig(n_buckets=64, max_tokens=6, embedding_dim=8, hidden_dim=8)
SIZES = [1, 5, 4, 9, 12, 2, 13]  # with batch size 4: 1 to 4 steps, short and full last batches


def _clients(seed: int = 0) -> list[ClientData]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in SIZES:
        tokens = torch.randint(1, 64, (n, 6), generator=g)
        lengths = torch.randint(0, 7, (n,), generator=g)  # left-aligned padding, some messages empty
        tokens[torch.arange(6) >= lengths.unsqueeze(1)] = emoji.PAD
        out.append(ClientData(tokens=tokens, labels=torch.randint(0, 5, (n,), generator=g)))
    return out


def _params():
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=CFG, n_classes=5)
    return parameters_to_vector(model.parameters()).detach().clone()


def _one_by_one(params, datas, local, clip_norm=None):
    trainer = LocalTrainer(emoji.EmojiModel(config=CFG, n_classes=5), local)
    trainer.load(params)
    return [
        trainer.update(d, generator=torch.Generator().manual_seed(10 + i), clip_norm=clip_norm)
        for i, d in enumerate(datas)
    ]


def _batched(params, datas, local, chunk, clip_norm=None, first_seed=10, closed_form=True):
    trainer = BatchedLocalTrainer(
        emoji.EmojiModel(config=CFG, n_classes=5), local, chunk=chunk, closed_form=closed_form
    )
    assert trainer.closed_form == closed_form  # EmojiModel offers loss_grads_stacked
    trainer.load(params)
    got = list(
        trainer.updates(
            datas, [torch.Generator().manual_seed(first_seed + i) for i in range(len(datas))], clip_norm=clip_norm
        )
    )
    assert sorted(i for i, _ in got) == list(range(len(datas)))  # every client exactly once
    return dict(got)


@pytest.mark.parametrize("closed_form", [True, False], ids=["closed-form", "autograd"])
@pytest.mark.parametrize("chunk", [1, 3, 64])
@pytest.mark.parametrize("epochs", [1, 3])
def test_batched_updates_equal_one_client_at_a_time(chunk, epochs, closed_form):
    """Both batched paths (the model's closed-form gradients and autograd) against the loop trainer."""
    params, datas = _params(), _clients()
    before = params.clone()
    local = LocalConfig(epochs=epochs, batch_size=4, lr=0.5)
    expected = _one_by_one(params, datas, local)
    got = _batched(params, datas, local, chunk, closed_form=closed_form)
    for i, ref in enumerate(expected):
        assert torch.equal(got[i].delta.index, ref.delta.index)  # the same coordinates: rows looked up + dense
        torch.testing.assert_close(got[i].delta.values, ref.delta.values, atol=1e-6, rtol=1e-5)
        assert got[i].n_examples == ref.n_examples == SIZES[i]
        assert got[i].loss == pytest.approx(ref.loss, rel=1e-5)
        assert float(ref.delta.values.abs().max()) > 1e-3  # the clients really trained
    assert torch.equal(params, before)  # the global parameters are never modified


def test_batched_client_side_clipping_matches_and_reports_the_bit():
    params, datas = _params(), _clients(seed=1)
    local = LocalConfig(batch_size=4, lr=2.0)
    free = _one_by_one(params, datas, local)
    clip = float(torch.tensor([float(u.delta.values.norm()) for u in free]).median())
    expected, got = _one_by_one(params, datas, local, clip), _batched(params, datas, local, 4, clip)
    bits = [u.unclipped for u in expected]
    assert any(bits) and not all(bits)  # the median norm clips some clients and not others
    for i, ref in enumerate(expected):
        assert got[i].unclipped == ref.unclipped
        assert float(got[i].delta.values.norm()) <= clip * (1 + 1e-5)
        torch.testing.assert_close(got[i].delta.values, ref.delta.values, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 64])
@pytest.mark.parametrize("clip", [None, "median"])
def test_round_sum_equals_folding_the_one_by_one_updates(chunk, clip):
    """The in-process engine's summed path (no observers): the total, weight, losses and unclipped
    count the server would have folded from the loop trainer's updates, clipped like the server."""
    params, datas = _params(), _clients(seed=2)
    local = LocalConfig(batch_size=4, lr=2.0)
    free = _one_by_one(params, datas, local)
    clip_norm = None if clip is None else float(torch.tensor([float(u.delta.values.norm()) for u in free]).median())
    weighted = clip is None  # FedAvg weights by example counts; DP-FedAvg adds clipped updates
    expected = torch.zeros_like(params)
    n_unclipped = 0
    for update in free:
        delta, unclipped = (update.delta, True) if clip_norm is None else clip_update(update.delta, clip_norm)
        add_delta(expected, delta, weight=update.n_examples if weighted else 1.0)
        n_unclipped += unclipped
    trainer = BatchedLocalTrainer(emoji.EmojiModel(config=CFG, n_classes=5), local, chunk=chunk)
    trainer.load(params)
    generators = [torch.Generator().manual_seed(10 + i) for i in range(len(datas))]
    total, weight, loss_sum, unclipped_count = trainer.round_sum(
        datas, generators, clip_norm=clip_norm, weighted=weighted
    )
    torch.testing.assert_close(total, expected, atol=1e-6, rtol=1e-5)
    assert float(expected.abs().max()) > 1e-2
    assert weight == (sum(SIZES) if weighted else len(SIZES))
    assert loss_sum == pytest.approx(sum(u.loss for u in free), rel=1e-5)
    assert unclipped_count == n_unclipped and (clip is None or 0 < n_unclipped < len(SIZES))


def test_clients_stay_independent_whatever_else_is_in_the_batch():
    params, datas = _params(), _clients()
    local = LocalConfig(batch_size=4, lr=0.5)
    alone = _batched(params, datas[3:4], local, 64, first_seed=13)[0]
    together = _batched(params, datas, local, 64)[3]
    assert torch.equal(alone.delta.index, together.delta.index)
    torch.testing.assert_close(alone.delta.values, together.delta.values, atol=1e-6, rtol=1e-5)


def test_models_without_a_stacked_forward_are_refused():
    plain = nn.Sequential(nn.Embedding(8, 2), nn.Flatten(), nn.Linear(4, 2))
    assert supports_batching(emoji.EmojiModel(config=CFG, n_classes=5)) and not supports_batching(plain)
    with pytest.raises(ValueError, match="forward_stacked"):
        BatchedLocalTrainer(plain, LocalConfig())
    with pytest.raises(ValueError, match="chunk"):
        BatchedLocalTrainer(emoji.EmojiModel(config=CFG, n_classes=5), LocalConfig(), chunk=0)
    with pytest.raises(RuntimeError, match="load"):
        next(
            BatchedLocalTrainer(emoji.EmojiModel(config=CFG, n_classes=5), LocalConfig()).updates(
                _clients()[:1], [torch.Generator()]
            )
        )


@pytest.mark.parametrize("seed", range(5))
def test_closed_form_gradients_equal_autograd_through_forward_stacked(seed):
    """``loss_grads_stacked`` on random models and batches (padding, empty messages, repeated rows):
    the loss and every gradient as autograd computes them through ``forward_stacked``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    k, batch, width, rows_per_client, n_classes = 3, 5, 6, 7, 5
    model = emoji.EmojiModel(config=CFG, n_classes=n_classes)
    table = torch.randn(k * rows_per_client, CFG.embedding_dim, generator=g)
    dense = [
        p.detach().expand(k, *p.shape).clone() + 0.1 * torch.randn(k, *p.shape, generator=g)
        for p in list(model.parameters())[1:]
    ]
    tokens = torch.randint(1, 64, (k, batch, width), generator=g)
    lengths = torch.randint(0, width + 1, (k, batch), generator=g)
    tokens[torch.arange(width) >= lengths.unsqueeze(-1)] = emoji.PAD
    rows = torch.randint(0, rows_per_client, (k, batch, width), generator=g) + rows_per_client * torch.arange(k).view(
        k, 1, 1
    )
    labels = torch.randint(0, n_classes, (k, batch), generator=g)
    scale = torch.rand(k, batch, generator=g) * (torch.rand(k, batch, generator=g) > 0.2)

    leaves = [table.clone().requires_grad_(), *(p.clone().requires_grad_() for p in dense)]
    logits = model.forward_stacked(leaves[0], leaves[1:], rows, tokens)
    ce = nn.functional.cross_entropy(logits.reshape(k * batch, -1), labels.reshape(-1), reduction="none").view(k, batch)
    expected_loss = (ce * scale).sum(1)
    expected = torch.autograd.grad(expected_loss.sum(), leaves)

    loss, index, row_grad, grads = model.loss_grads_stacked(
        table, dense, rows, model.pooling_weights(tokens.view(k * batch, width)).view(k, batch, width), labels, scale
    )
    torch.testing.assert_close(loss, expected_loss.detach(), atol=1e-6, rtol=1e-5)
    emb_grad = torch.zeros_like(table).index_add_(0, index, row_grad)
    torch.testing.assert_close(emb_grad, expected[0].to_dense(), atol=1e-6, rtol=1e-5)
    for got, ref in zip(grads, expected[1:]):
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    assert float(emb_grad.abs().max()) > 1e-4 and all(float(r.abs().max()) > 1e-4 for r in expected[1:])


def test_partition_datas_equals_data_client_by_client():
    """The in-process engine's one-gather ``ClientPartition.datas`` against ``data`` one client at a time."""
    import numpy as np

    from sandbox.federated.clients import ClientPartition
    from sandbox.tasks.base import Examples

    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 6, size=9)
    n = int(sizes.sum())
    examples = Examples(
        tokens=torch.randint(0, 64, (n, 4)), labels=torch.randint(0, 5, (n,)), message_index=np.arange(n)
    )
    partition = ClientPartition(
        unit="user", owners=np.arange(9), offsets=np.concatenate([[0], np.cumsum(sizes)]), rows=rng.permutation(n)
    )
    clients = np.array([7, 0, 3, 3, 8])
    for got, c in zip(partition.datas(clients, examples), clients, strict=True):
        ref = partition.data(int(c), examples)
        assert torch.equal(got.tokens, ref.tokens) and torch.equal(got.labels, ref.labels)
    assert partition.datas(np.zeros(0, dtype=np.int64), examples) == []
