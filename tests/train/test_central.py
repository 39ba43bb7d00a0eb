"""Central trainer: Opacus ghost clipping against a per-example reference, and determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import plan_dpsgd
from sandbox.tasks import emoji
from sandbox.train.central import DPSGDSettings, TensorRows, TrainConfig, train_dpsgd

CFG = emoji.EmojiTaskConfig(n_buckets=64, max_tokens=5, embedding_dim=6, hidden_dim=7)


def clipped_reference_step(model, tokens, labels, *, clip: float, lr: float):
    """Batch-size-1 reference (Opacus' own test pattern): clip each example's gradient, sum, average."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(labels)):
        model.zero_grad()
        nn.functional.cross_entropy(model(tokens[i : i + 1]), labels[i : i + 1]).backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for t, p in zip(total, params):
            t += p.grad * factor
    with torch.no_grad():
        return [p - lr * t / len(labels) for p, t in zip(params, total)]


def test_dpsgd_without_noise_equals_per_example_clipping_reference():
    torch.manual_seed(0)
    n = 12
    tokens = torch.randint(0, 64, (n, 5))
    labels = torch.randint(0, 4, (n,))
    model = emoji.EmojiModel(config=CFG, n_classes=4)
    reference = emoji.EmojiModel(config=CFG, n_classes=4)
    reference.load_state_dict(model.state_dict())
    expected = clipped_reference_step(reference, tokens, labels, clip=0.05, lr=0.5)

    # batch_size = N makes q = 1: one Poisson batch holding every example, one step
    cfg = TrainConfig(epochs=1, batch_size=n, lr=0.5, optimizer="sgd")
    plan = plan_dpsgd(n_examples=n, batch_size=n, epochs=1, noise_multiplier=1e-9, delta=1e-5, accountant="rdp")
    assert (plan.sample_rate, plan.steps) == (1.0, 1)
    dp = DPSGDSettings(clip_norm=0.05, plan=plan)
    book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
    result = train_dpsgd(
        model,
        TensorRows(tokens, labels),
        cfg=cfg,
        dp=dp,
        book=book,
        generator=torch.Generator().manual_seed(0),
        noise_generator=torch.Generator().manual_seed(0),
    )
    assert result.steps == 1 and book.steps == 1
    for got, want in zip(result.model.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-4)


def _tiny(n=40):
    g = torch.Generator().manual_seed(1)
    return TensorRows(torch.randint(0, 64, (n, 5), generator=g), torch.randint(0, 4, (n,), generator=g))


def _train(rows, *, cfg, plan, book=None):
    book = book or PrivacyBook(unit="example", delta=plan.delta, accountant=plan.accountant)
    return train_dpsgd(
        emoji.EmojiModel(config=CFG, n_classes=4),
        rows,
        cfg=cfg,
        dp=DPSGDSettings(clip_norm=1.0, plan=plan),
        book=book,
        generator=torch.Generator().manual_seed(0),
        noise_generator=torch.Generator().manual_seed(0),
    )


def test_dpsgd_executes_the_plan_it_is_given():
    # N = 40, B = 16: ⌈40/16⌉ = 3 batches, q = 1/3; 2.5 epochs → round(7.5) = 8 steps (half to even)
    rows, cfg = _tiny(), TrainConfig(epochs=2.5, batch_size=16, lr=0.1, optimizer="sgd")
    plan = plan_dpsgd(n_examples=40, batch_size=16, epochs=2.5, noise_multiplier=1.3, delta=1e-3, accountant="rdp")
    result = _train(rows, cfg=cfg, plan=plan)
    assert (result.steps, result.sample_rate, result.noise_multiplier) == (8, 1 / 3, 1.3)
    assert [(e.noise_multiplier, e.sample_rate, e.steps) for e in result.book.events] == [(1.3, 1 / 3, 8)]
    assert result.book.epsilon() == plan.planned_epsilon


def test_dpsgd_refuses_a_plan_for_other_data_or_another_book():
    rows, cfg = _tiny(), TrainConfig(epochs=1, batch_size=16)
    other_n = plan_dpsgd(n_examples=41, batch_size=16, epochs=1, noise_multiplier=1.0, delta=1e-3)
    other_b = plan_dpsgd(n_examples=40, batch_size=8, epochs=1, noise_multiplier=1.0, delta=1e-3)
    for plan in (other_n, other_b):
        with pytest.raises(ValueError, match="dpsgd plan for these 40 examples at batch size 16"):
            _train(rows, cfg=cfg, plan=plan)
    plan = plan_dpsgd(n_examples=40, batch_size=16, epochs=1, noise_multiplier=1.0, delta=1e-3)
    with pytest.raises(ValueError, match="plan's unit, delta and accountant"):
        _train(rows, cfg=cfg, plan=plan, book=PrivacyBook(unit="example", delta=1e-4, accountant="rdp"))
