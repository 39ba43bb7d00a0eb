"""Central trainer: Opacus ghost clipping against a per-example reference, and determinism."""

from __future__ import annotations

import torch
from torch import nn

from sandbox.privacy import PrivacyBook
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
    dp = DPSGDSettings(clip_norm=0.05, delta=1e-5, accountant="rdp", noise_multiplier=1e-9)
    book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
    result = train_dpsgd(model, TensorRows(tokens, labels), cfg=cfg, dp=dp, book=book,
                         generator=torch.Generator().manual_seed(0),
                         noise_generator=torch.Generator().manual_seed(0))
    assert result.steps == 1 and book.steps == 1
    for got, want in zip(result.model.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-4)
