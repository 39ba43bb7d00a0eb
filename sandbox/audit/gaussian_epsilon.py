"""The ε of Gaussian statistics: a pair of Gaussians, and the final-model canary test of DP-FedAvg.

* ``epsilon_two_gaussians``: the exact ε at δ of N(μ₀, σ₀²) against N(μ₁, σ₁²) (the canary-client
  estimate of Andrew et al. fits one to the inserted canaries' cosines and one to the null ones).
* ``final_model_epsilon`` (with ``server_round_weights``): the exact ε of the final-model cosine test
  against a worst-case canary under DP-FedAvg's own noise, what the estimate should approach.

Used by ``sandbox.audit.canary_clients``; pure numerics (numpy, scipy), no run or record.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.signal
import scipy.stats
from scipy.special import log_ndtr


# -- the ε of a pair of Gaussians -----------------------------------------------------------------
def _log_mass(lo: float, hi: float, mu: float, std: float) -> float:
    """log Pr(lo < Y < hi) for Y ~ N(mu, std²), accurate in both tails (−inf for an empty interval)."""
    if not hi > lo:
        return -math.inf
    a, b = (lo - mu) / std, (hi - mu) / std
    if a > 0:  # right tail: Pr(Y > lo) − Pr(Y > hi), each as log Φ(−z)
        big, small = log_ndtr(-a), log_ndtr(-b)
    else:  # Φ(b) − Φ(a)
        big, small = log_ndtr(b), log_ndtr(a)
    if small == -math.inf:
        return float(big)
    if small >= big:
        return -math.inf
    return float(big + math.log1p(-math.exp(small - big)))


def _log_delta(mu_p: float, std_p: float, mu_q: float, std_q: float, eps: float) -> float:
    """log δ_P‖Q(ε) = log (P(S) − e^ε Q(S)), S = {y : log p(y)/q(y) > ε}: the hockey-stick divergence.

    The privacy loss log p/q of two Gaussians is the quadratic A y² + B y + c0 (Steinke 2022, "Composition
    of DP & privacy amplification by subsampling", Sec. 4), so S is a half-line (A = 0), the outside of
    the two roots (A > 0) or the inside (A < 0)."""
    A = 0.5 * (std_q**-2 - std_p**-2)
    B = mu_p / std_p**2 - mu_q / std_q**2
    c0 = 0.5 * ((mu_q / std_q) ** 2 - (mu_p / std_p) ** 2) + math.log(std_q / std_p)
    if A == 0.0:
        if B == 0.0:  # the same Gaussian: the loss is 0 everywhere
            return -math.inf
        t = (eps - c0) / B
        pieces = [(t, math.inf)] if B > 0 else [(-math.inf, t)]
    else:
        disc = B * B - 4 * A * (c0 - eps)
        if disc <= 0:  # A > 0: S is the whole line, δ = 1 − e^ε ≤ 0; A < 0: S is empty
            return -math.inf
        r = sorted(((-B - math.sqrt(disc)) / (2 * A), (-B + math.sqrt(disc)) / (2 * A)))
        pieces = [(-math.inf, r[0]), (r[1], math.inf)] if A > 0 else [(r[0], r[1])]
    log_p = np.logaddexp.reduce([_log_mass(lo, hi, mu_p, std_p) for lo, hi in pieces])
    log_q = np.logaddexp.reduce([_log_mass(lo, hi, mu_q, std_q) for lo, hi in pieces])
    gap = eps + log_q - log_p
    if not gap < 0:
        return -math.inf
    return float(log_p + math.log1p(-math.exp(gap)))


def epsilon_two_gaussians(mu0: float, std0: float, mu1: float, std1: float, delta: float) -> float:
    """The smallest ε ≥ 0 at which N(mu0, std0²) and N(mu1, std1²) are (ε, δ)-indistinguishable.

    Exact (up to the root finder's tolerance): δ(ε) = max(δ_{1‖0}(ε), δ_{0‖1}(ε)), each from the
    privacy-loss quadratic (``_log_delta``), solved for δ(ε) = δ in log space by Brent's method on a
    bracket grown tenfold until it holds. For std0 == std1 = σ it is the Gaussian mechanism's ε with
    sensitivity |mu1 − mu0| and noise σ (Balle & Wang 2018). Standard deviations must be > 0.
    """
    if not (std0 > 0 and std1 > 0):
        raise ValueError(f"standard deviations must be > 0, got {std0}, {std1}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    target = math.log(delta)

    def excess(eps: float) -> float:  # decreasing in ε; −inf replaced by a finite floor for Brent
        worst = max(_log_delta(mu1, std1, mu0, std0, eps), _log_delta(mu0, std0, mu1, std1, eps))
        return max(worst, -1e6) - target

    if excess(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        lo, hi = hi, hi * 10
        if hi > 1e12:
            return math.inf
    return float(scipy.optimize.brentq(excess, lo, hi, xtol=1e-10, rtol=1e-10))


# -- the exact ε of the final-model statistic, under the mechanism's own noise ----------------------
def server_round_weights(server_optimizer: str, server_momentum: float, rounds: int) -> np.ndarray | None:
    """The weight of each round's released mean delta in the final model's total change, up to the
    server learning rate (a common factor, which no cosine sees): FedAvg 1 for every round; FedAvgM
    (``torch.optim.SGD`` with momentum β, dampening 0) (1 − β^(T−t+1))/(1 − β) for round t of T, the
    sum of the momentum buffer's copies of it. None for FedAdam, whose step is not linear in the deltas."""
    t = np.arange(1, int(rounds) + 1, dtype=np.float64)
    if server_optimizer == "fedavg":
        return np.ones_like(t)
    if server_optimizer == "fedavgm":
        b = float(server_momentum)
        return np.full_like(t, float(rounds)) if b == 1.0 else (1.0 - b ** (rounds - t + 1)) / (1.0 - b)
    return None


def final_model_epsilon(
    noise_multiplier: float, sample_rate: float, round_weights, delta: float, *, grid: float = 1e-3
) -> float:
    """The exact ε at δ of the canary-client test on the final model, for a worst-case client, when the
    only thing hiding it is the mechanism's noise (DP-FedAvg with a fixed clip norm C).

    Projected on its own direction u (orthogonal to every other update, as a random direction in high
    dimension is), the total change carries Σ_t w_t·b_t·C from the canary, b_t ~ Bernoulli(q) its
    Poisson sampling in round t, plus Gaussian noise of standard deviation z·C·√(Σ_t w_t²) (every
    round's N(0, z²C²) on the sum, the common denominator aside). In units of that noise the
    statistic is Y = S + ξ, S = Σ_t w_t·b_t / (z·√Σw²), ξ ~ N(0, 1), against N(0, 1) without the
    canary. This computes the distribution of S exactly on a lattice of step ``grid`` (each w_t
    rounded to it; the step is made finer so that the largest w_t spans ≥ 2,000 steps, down to
    1e-5), the density of Y as S's distribution convolved with N(0, 1), and the smallest ε
    whose hockey-stick divergence, in both directions, is ≤ δ. The test is a post-processing of the
    rounds' releases, so this is ≤ the true ε of the run, and the accountant's ε is ≥ both; an
    estimate from the run's canaries should agree with it within its CI when the real clients'
    training adds little to the total change's norm (a larger norm only hides the canary more).
    """
    w = np.asarray(round_weights, dtype=np.float64)
    if not (noise_multiplier > 0 and 0 < sample_rate <= 1 and len(w) and np.all(w >= 0)):
        raise ValueError(f"need z > 0, q in (0, 1], non-negative weights: got {noise_multiplier}, {sample_rate}, {w}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    exact = w / (noise_multiplier * math.sqrt(float(np.sum(w**2))))  # each round's shift of Y
    grid = max(min(grid, float(exact.max()) / 2000), 1e-5)  # the largest shift is 2000 steps (or more), exactly
    shifts = np.rint(exact / grid).astype(np.int64)
    pmf = np.ones(1)
    for s in shifts:  # S's distribution: each round adds its shift with probability q
        nxt = np.zeros(len(pmf) + s)
        nxt[: len(pmf)] += (1.0 - sample_rate) * pmf
        nxt[s:] += sample_rate * pmf
        pmf = nxt
    tail = int(math.ceil(12.0 / grid))  # N(0, 1) beyond 12: mass < 1e-32
    y = (np.arange(-tail, len(pmf) + tail) * grid).astype(np.float64)
    kernel = scipy.stats.norm.pdf(np.arange(-tail, tail + 1) * grid)
    p = np.clip(scipy.signal.fftconvolve(pmf, kernel), 0.0, None)  # density of Y on y (same lattice)
    q = scipy.stats.norm.pdf(y)

    def log_excess(eps: float) -> float:
        e = math.exp(eps)
        worst = max(np.clip(p - e * q, 0.0, None).sum(), np.clip(q - e * p, 0.0, None).sum()) * grid
        return math.log(max(worst, 1e-300)) - math.log(delta)

    if log_excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while log_excess(hi) > 0:
        hi *= 2.0
        if hi > 700:  # e^ε overflows: the canary is read exactly
            return math.inf
    return float(scipy.optimize.brentq(log_excess, 0.0, hi, xtol=1e-6))
