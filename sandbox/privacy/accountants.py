"""The Opacus accountants this project uses, each with a guard where Opacus breaks or is slow.

The math stays in Opacus; these subclasses only stop it from exhausting memory (PRV),
crashing at the edge of a root bracket (GDP), or recomputing the same one-step RDP curve
every round (RDP). They are registered with Opacus' own registry so ``get_noise_multiplier``
searches through the same guards.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
from opacus.accountants import (
    GaussianAccountant,
    IAccountant,
    PRVAccountant,
    RDPAccountant,
    create_accountant,
    register_accountant,
)
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.analysis.gdp import compute_mu_poisson, delta_eps_mu
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV

from sandbox.privacy.events import AccountingError

# PRV discretises the privacy loss on a grid that grows without bound as σ shrinks
# (σ=0.1, q=0.5, 100 steps: 32M points, 5.5 GB, 40 s). Above this many points
# (~1.4 GB peak) PRV is refused with an AccountingError instead of exhausting memory.
MAX_PRV_GRID_POINTS = 2**23
# Opacus' GDP solves δ(ε) = δ for ε by a root search on this bracket.
GDP_EPSILON_BRACKET = (0.0, 500.0)


@lru_cache(maxsize=4096)
def _rdp_of_one_step(sample_rate: float, noise_multiplier: float, orders: tuple[float, ...]) -> np.ndarray:
    rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders))
    rdp.setflags(write=False)
    return rdp


class CachedRDPAccountant(RDPAccountant):
    """Opacus' RDPAccountant, with each (q, σ)'s one-step RDP curve computed once per process.

    Opacus' ``compute_rdp(q, σ, steps, orders)`` is the one-step curve times ``steps``, so caching
    the curve changes no ε (a test compares with Opacus bit for bit); it removes the ~0.1 s that
    151 RDP orders cost each time a round's ε is reported. ε itself is still computed from the
    whole history every time (``PrivacyBook.epsilon``), never cached."""

    def get_privacy_spent(self, *, delta: float, alphas=None) -> tuple[float, float]:
        if not self.history:
            return 0, 0
        orders = tuple(self.DEFAULT_ALPHAS if alphas is None else alphas)
        rdp = sum(
            [
                _rdp_of_one_step(float(sample_rate), float(noise_multiplier), orders) * num_steps
                for noise_multiplier, sample_rate, num_steps in self.history
            ]
        )
        eps, best_alpha = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=rdp, delta=delta)
        return float(eps), float(best_alpha)


class GuardedPRVAccountant(PRVAccountant):
    """Opacus' PRVAccountant, refusing grids above MAX_PRV_GRID_POINTS before allocating."""

    def get_epsilon(
        self, delta: float, *, eps_error: float = 0.01, delta_error: float | None = None, **kwargs
    ) -> float:
        delta_error = delta / 1000 if delta_error is None else delta_error  # Opacus' default
        with warnings.catch_warnings():
            # PRV sizes its grid from RDP tail bounds; RDP's "optimal order is the
            # smallest/largest alpha" there concerns the grid size, not the ε reported.
            warnings.filterwarnings("ignore", message="Optimal order is the")
            domain = self._get_domain(  # the same grid Opacus is about to build
                prvs=[PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in self.history],
                num_self_compositions=[steps for _, _, steps in self.history],
                eps_error=eps_error,
                delta_error=delta_error,
            )
            if domain.size > MAX_PRV_GRID_POINTS:
                raise AccountingError(
                    f"PRV would need a grid of {domain.size:,} points (limit "
                    f"{MAX_PRV_GRID_POINTS:,}) for history {self.history}; use accountant 'rdp'"
                )
            return super().get_epsilon(delta, eps_error=eps_error, delta_error=delta_error, **kwargs)


class BracketedGaussianAccountant(GaussianAccountant):
    """Opacus' GaussianAccountant (Poisson, CLT approximation) answering at the ends of
    its root bracket instead of raising: 0.0 when its δ(0) <= δ already, ``inf`` when
    even δ(500) > δ (noise so small that ε exceeds 500), both read off Opacus' own
    ``delta_eps_mu``. Its construction warning ("can underestimate privacy expenditure")
    is silenced here and carried by docstrings and the budget CLI's notes instead."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="GDP accounting is experimental")
            super().__init__()

    def get_epsilon(self, delta: float, poisson: bool = True, **kwargs) -> float:
        try:
            return super().get_epsilon(delta, poisson=poisson, **kwargs)
        except ValueError:
            if not poisson:
                raise
            sigma, sample_rate, steps = self.history[-1]
            mu = compute_mu_poisson(steps=steps, noise_multiplier=sigma, sample_rate=sample_rate)
            low, high = GDP_EPSILON_BRACKET
            if delta_eps_mu(eps=low, mu=mu) <= delta:
                return low
            if delta_eps_mu(eps=high, mu=mu) > delta:
                return math.inf
            raise


# registry names differ from Opacus' own; mechanism() (and so state_dict) stays Opacus'
_REGISTRY_NAME = {"rdp": "sandbox_cached_rdp", "prv": "sandbox_guarded_prv", "gdp": "sandbox_bracketed_gdp"}
register_accountant(_REGISTRY_NAME["rdp"], CachedRDPAccountant, force=True)
register_accountant(_REGISTRY_NAME["prv"], GuardedPRVAccountant, force=True)
register_accountant(_REGISTRY_NAME["gdp"], BracketedGaussianAccountant, force=True)


def registry_name(accountant: str) -> str:
    """The Opacus registry name (for ``create_accountant``/``get_noise_multiplier``)."""
    return _REGISTRY_NAME[accountant]


def build_accountant(accountant: str) -> IAccountant:
    """A fresh, empty Opacus accountant for "rdp", "prv" or "gdp" (guarded as above)."""
    return create_accountant(mechanism=registry_name(accountant))
