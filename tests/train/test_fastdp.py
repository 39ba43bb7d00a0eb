"""Fast per-example clipping (sandbox.train.fastdp) against Opacus' materialised per-sample gradients."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule
from torch import nn

from sandbox.config.schema import TrainConfig
from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import plan_dpsgd
from sandbox.tasks import emoji
from sandbox.tasks.text import HashedBagModel
from sandbox.train import central
from sandbox.train.fastdp import OPACUS_NORM_EPS, clipped_gradient_sum, supports_fast_clipping


def _batch(seed: int, *, n: int, buckets: int, tokens: int, classes: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, min(buckets, 9), (n, tokens), generator=g)  # few buckets: many repeated tokens
    x[n // 2 :] = torch.randint(1, buckets, (n - n // 2, tokens), generator=g)
    lengths = torch.randint(0, tokens + 1, (n,), generator=g)  # left-aligned padding, some rows empty
    lengths[0] = 0
    x[torch.arange(tokens) >= lengths.unsqueeze(1)] = emoji.PAD
    return x, torch.randint(0, classes, (n,), generator=g)


def _opacus_clipped(model: nn.Module, x, y, clip_norm: float):
    """Opacus: per-sample gradients by hooks (materialised), its clip factor, summed."""
    gsm = GradSampleModule(model, loss_reduction="sum")  # hooks: per-sample grads materialised
    nn.functional.cross_entropy(gsm(x), y, reduction="sum").backward()
    per_sample = [p.grad_sample.reshape(len(y), -1) for p in model.parameters()]
    norms = torch.cat(per_sample, 1).norm(dim=1)
    factors = (clip_norm / (norms + OPACUS_NORM_EPS)).clamp(max=1.0)
    sums = [(factors.view(-1, *[1] * (p.grad_sample.dim() - 1)) * p.grad_sample).sum(0) for p in model.parameters()]
    gsm._close()
    return norms, factors, sums


@pytest.mark.parametrize(
    "seed, n, buckets, dim, hidden, tokens, classes",
    [(0, 16, 64, 8, 8, 6, 5), (1, 33, 512, 16, 32, 12, 40), (2, 64, 50, 4, 4, 20, 3)],
)
def test_norms_and_clipped_sum_equal_opacus_per_sample_gradients(seed, n, buckets, dim, hidden, tokens, classes):
    torch.manual_seed(seed)
    cfg = emoji.EmojiTaskConfig(n_buckets=buckets, max_tokens=tokens, embedding_dim=dim, hidden_dim=hidden)
    model = HashedBagModel(config=cfg, n_classes=classes)
    x, y = _batch(seed, n=n, buckets=buckets, tokens=tokens, classes=classes)
    clip = float(clipped_gradient_sum(model, x, y, clip_norm=1.0).norms.median())  # clips about half
    got = clipped_gradient_sum(model, x, y, clip_norm=clip)
    norms, factors, sums = _opacus_clipped(model, x, y, clip)
    torch.testing.assert_close(got.norms, norms, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.factors, factors, rtol=1e-5, atol=1e-7)
    assert 0 < int((factors < 1).sum()) < n  # some examples clipped, others not
    for mine, theirs in zip(got.grads, sums, strict=True):
        assert mine.shape == theirs.shape
        scale = float(theirs.abs().max())
        assert scale > 0
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5 * scale)
    expected_loss = nn.functional.cross_entropy(model(x), y, reduction="none")
    torch.testing.assert_close(got.loss, expected_loss, rtol=1e-5, atol=1e-6)


def test_an_example_without_tokens_has_no_embedding_gradient_and_other_models_are_refused():
    torch.manual_seed(0)
    model = HashedBagModel(config=emoji.EmojiTaskConfig(n_buckets=32, max_tokens=4, embedding_dim=4), n_classes=3)
    empty = torch.zeros(1, 4, dtype=torch.int64)
    got = clipped_gradient_sum(model, empty, torch.tensor([1]), clip_norm=1e9)
    assert float(got.grads[0].abs().max()) == 0.0 and float(got.grads[2].abs().max()) > 0  # its bias gradients are not
    assert supports_fast_clipping(model) and not supports_fast_clipping(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="HashedBagModel"):
        clipped_gradient_sum(nn.Linear(2, 2), empty, torch.tensor([0]), clip_norm=1.0)


def _train(monkeypatch, fast: bool, rows, cfg, train):
    if not fast:
        monkeypatch.setattr(central, "supports_fast_clipping", lambda model: False)
    torch.manual_seed(0)
    model = HashedBagModel(config=cfg, n_classes=5)
    plan = plan_dpsgd(
        n_examples=len(rows),
        batch_size=train.batch_size,
        epochs=train.epochs,
        noise_multiplier=0.7,
        delta=1e-5,
        accountant="rdp",
    )
    book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
    result = central.train_dpsgd(
        model,
        rows,
        cfg=train,
        dp=central.DPSGDSettings(clip_norm=0.3, plan=plan),
        book=book,
        generator=torch.Generator().manual_seed(1),
        noise_generator=torch.Generator().manual_seed(2),
    )
    monkeypatch.undo()
    return result, book


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fast_dpsgd_trains_the_model_opacus_ghost_clipping_trains(monkeypatch, optimizer):
    """Same Poisson batches, same noise draws (seeded here), same ε: the two paths end in the same model."""
    cfg = emoji.EmojiTaskConfig(n_buckets=128, max_tokens=8, embedding_dim=8, hidden_dim=16)
    x, y = _batch(5, n=400, buckets=128, tokens=8, classes=5)
    rows = central.TensorRows(x, y)
    train = TrainConfig(batch_size=32, epochs=2, lr=0.05, optimizer=optimizer)
    fast, fast_book = _train(monkeypatch, True, rows, cfg, train)
    ghost, ghost_book = _train(monkeypatch, False, rows, cfg, train)
    assert (fast.per_example_norms, ghost.per_example_norms) == ("hashed_bag", "opacus_ghost")
    assert fast.steps == ghost.steps > 0 and fast_book.epsilon() == ghost_book.epsilon() > 0
    torch.manual_seed(0)
    start = HashedBagModel(config=cfg, n_classes=5)  # the initial model both started from
    moved = 0.0
    for a, b in zip(fast.model.parameters(), ghost.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(fast.model.parameters(), start.parameters()):
        moved = max(moved, float((a - b).abs().max()))
    assert moved > 1e-3  # it trained
