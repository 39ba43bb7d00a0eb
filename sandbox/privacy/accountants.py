"""The Opacus accountants this project uses, each with a guard where Opacus breaks.

The math stays in Opacus; these subclasses only stop it from exhausting memory (PRV)
or crashing at the edge of a root bracket (GDP). They are registered with Opacus'
own registry so ``get_noise_multiplier`` searches through the same guards.
"""

from __future__ import annotations

import math
import warnings

from opacus.accountants import (
    GaussianAccountant,
    IAccountant,
    PRVAccountant,
    create_accountant,
    register_accountant,
)
from opacus.accountants.analysis.gdp import compute_mu_poisson, delta_eps_mu
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV

from sandbox.privacy.events import AccountingError

# PRV discretises the privacy loss on a grid that grows without bound as σ shrinks
# (σ=0.1, q=0.5, 100 steps: 32M points, 5.5 GB, 40 s). Above this many points
# (~1.4 GB peak) PRV is refused with an AccountingError instead of exhausting memory.
MAX_PRV_GRID_POINTS = 2**23
# Opacus' GDP solves δ(ε) = δ for ε by a root search on this bracket.
GDP_EPSILON_BRACKET = (0.0, 500.0)


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
_REGISTRY_NAME = {"rdp": "rdp", "prv": "sandbox_guarded_prv", "gdp": "sandbox_bracketed_gdp"}
register_accountant(_REGISTRY_NAME["prv"], GuardedPRVAccountant, force=True)
register_accountant(_REGISTRY_NAME["gdp"], BracketedGaussianAccountant, force=True)


def registry_name(accountant: str) -> str:
    """The Opacus registry name (for ``create_accountant``/``get_noise_multiplier``)."""
    return _REGISTRY_NAME[accountant]


def build_accountant(accountant: str) -> IAccountant:
    """A fresh, empty Opacus accountant for "rdp", "prv" or "gdp" (guarded as above)."""
    return create_accountant(mechanism=registry_name(accountant))
