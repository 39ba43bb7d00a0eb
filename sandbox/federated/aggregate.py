"""Server-side aggregation on flat update vectors: clipping, Gaussian noise, averaging, adaptive clipping.

Pure functions of (updates, config, seeded generator). Noise is drawn into a new tensor,
never added in place, so tests can check its statistics. DP-FedAvg (McMahan et al. 2018)
divides the noisy sum by the *expected* number of clients q·N (a fixed denominator): the
actual count is itself data-dependent and must not be revealed unnoised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Update:
    """What one client sends back: a flat parameter delta (new − old) and scalars.

    ``norm`` is the L2 norm of the delta *before* clipping, kept only on the client side
    for the adaptive-clipping bit; ``unclipped`` is that bit (norm ≤ clip norm in use).
    """

    delta: torch.Tensor
    n_examples: int
    loss: float
    unclipped: bool = True


def clip_update(delta: torch.Tensor, clip_norm: float) -> tuple[torch.Tensor, bool]:
    """Scale ``delta`` to L2 norm ≤ ``clip_norm``; also return whether it was already within it."""
    norm = float(torch.linalg.vector_norm(delta))
    if norm <= clip_norm:
        return delta, True
    return delta * (clip_norm / norm), False


def gaussian_noise(shape, *, std: float, generator: torch.Generator) -> torch.Tensor:
    """A fresh N(0, std²) tensor drawn from ``generator`` (float64 draw, float32 result)."""
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * std).to(torch.float32)


def noisy_mean(total: torch.Tensor, *, noise_std: float, denominator: float,
               generator: torch.Generator) -> torch.Tensor:
    """(sum of clipped updates + N(0, noise_std²)) / denominator, as a new tensor."""
    if denominator <= 0:
        raise ValueError(f"denominator must be > 0, got {denominator}")
    return (total + gaussian_noise(total.shape, std=noise_std, generator=generator)) / denominator


def update_noise_multiplier(total: float, count_noise_multiplier: float) -> float:
    """Noise multiplier left for the update when the clipped-count query uses σ_b.

    Andrew et al. 2021 (Thm. 1): releasing the update with z_Δ and the count with σ_b is
    together a Gaussian mechanism with z = (z_Δ⁻² + (2σ_b)⁻²)^(-1/2); solve for z_Δ.
    """
    residual = total**-2 - (2 * count_noise_multiplier) ** -2
    if residual <= 0:
        raise ValueError(
            f"count noise σ_b={count_noise_multiplier} is too small for total noise z={total}: "
            f"need σ_b > z/2 = {total / 2:.4g}"
        )
    return residual**-0.5


def next_clip_norm(clip_norm: float, *, unclipped_fraction: float, target_quantile: float,
                   learning_rate: float) -> float:
    """Geometric update of the clip norm towards the ``target_quantile`` of update norms (Andrew et al. 2021)."""
    return clip_norm * math.exp(-learning_rate * (unclipped_fraction - target_quantile))
