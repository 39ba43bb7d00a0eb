"""Aggregation math: clipping, noise statistics, Andrew et al.'s noise split, clip-norm updates."""

from __future__ import annotations

import math

import pytest
import torch

from sandbox.federated.aggregate import (
    clip_update,
    gaussian_noise,
    next_clip_norm,
    noisy_mean,
)


def test_clip_update_scales_long_vectors_to_the_norm_and_keeps_short_ones():
    long = torch.tensor([3.0, 4.0])  # norm 5
    clipped, within = clip_update(long, 1.0)
    assert not within and torch.allclose(clipped, torch.tensor([0.6, 0.8]))
    short = torch.tensor([0.3, 0.4])
    same, within = clip_update(short, 1.0)
    assert within and same is short


def test_noisy_mean_has_the_promised_noise_and_leaves_the_sum_untouched():
    total = torch.zeros(200_000)
    mean = noisy_mean(total, noise_std=2.0, denominator=4.0, generator=torch.Generator().manual_seed(0))
    assert torch.count_nonzero(total) == 0  # noise goes into a new tensor
    assert float(mean.std()) == pytest.approx(0.5, rel=0.01)
    assert abs(float(mean.mean())) < 0.005


def test_noise_is_reproducible_from_the_generator():
    a = gaussian_noise((5,), std=1.0, generator=torch.Generator().manual_seed(3))
    b = gaussian_noise((5,), std=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_clip_norm_moves_geometrically_towards_the_target_quantile():
    # every update was within C: C is too large, shrink by exp(-η(1 − γ))
    assert next_clip_norm(1.0, unclipped_fraction=1.0, target_quantile=0.5, learning_rate=0.2) == pytest.approx(
        math.exp(-0.1)
    )
    assert next_clip_norm(1.0, unclipped_fraction=0.0, target_quantile=0.5, learning_rate=0.2) == pytest.approx(
        math.exp(0.1)
    )
    assert next_clip_norm(0.7, unclipped_fraction=0.5, target_quantile=0.5, learning_rate=0.2) == 0.7
