"""What ran, as immutable data, and the validation every privacy input passes once.

An event is ``steps`` consecutive runs of a subsampled Gaussian mechanism: each
unit (example, user or workspace) joins a step's batch with probability
``sample_rate``, the clipped sum gets Gaussian noise of std
``noise_multiplier * clip_norm``. Accountants consume events; see accounting.py.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

ACCOUNTANTS = ("rdp", "prv", "gdp")
UNITS = ("example", "user", "workspace")
# sampling kind -> neighbouring relation under which its ε holds. Only Poisson
# sampling (add/remove one unit) is analysed by the subsampled-Gaussian accountants.
NEIGHBOURING_RELATION = {"poisson": "add/remove one"}


class PrivacyInputError(ValueError):
    """Impossible privacy parameters; message names the parameter and the allowed range."""


class UnsupportedAccountingError(PrivacyInputError):
    """A possible record that the chosen accountant cannot account; refused, never approximated."""


class AccountingError(RuntimeError):
    """A maintained accountant failed on valid inputs (numerical limits, resource guard)."""


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive(name: str, value: object) -> None:
    """Raise PrivacyInputError unless ``value`` is a finite real number > 0."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise PrivacyInputError(f"{name} must be a finite number > 0, got {value!r}")


def check_count(name: str, value: object) -> None:
    """Raise PrivacyInputError unless ``value`` is an integer >= 1."""
    if not _is_count(value):
        raise PrivacyInputError(f"{name} must be an integer >= 1, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise PrivacyInputError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise PrivacyInputError(f"{name} must be one of {choices}, got {value!r}")


def validate_privacy_inputs(
    *,
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    steps: int | None = None,
    delta: float | None = None,
    target_epsilon: float | None = None,
) -> None:
    """Raise PrivacyInputError for an impossible value; ``None`` means "not given".

    Allowed: noise_multiplier finite > 0; sample_rate in (0, 1]; steps integer >= 1;
    delta in (0, 1); target_epsilon finite > 0.
    """
    if noise_multiplier is not None:
        check_positive("noise_multiplier", noise_multiplier)
    if sample_rate is not None:
        if not _is_real(sample_rate) or not 0 < sample_rate <= 1:  # NaN fails 0 < x
            raise PrivacyInputError(f"sample_rate must be a number in (0, 1], got {sample_rate!r}")
    if steps is not None:
        check_count("steps", steps)
    if delta is not None:
        if not _is_real(delta) or not 0 < delta < 1:
            raise PrivacyInputError(f"delta must be a number in (0, 1), got {delta!r}")
    if target_epsilon is not None:
        check_positive("target_epsilon", target_epsilon)


@dataclass(frozen=True)
class SubsampledGaussianEvent:
    """``steps`` consecutive runs of one subsampled Gaussian mechanism.

    noise_multiplier: σ = noise std / clip norm. sample_rate: q in (0, 1], the
    probability that each unit is in a step's batch (Poisson: the expected batch
    fraction). Only ``sampling="poisson"`` can be accounted; other kinds may be
    recorded, so the record stays true, but ε for them raises UnsupportedAccountingError.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    sampling: str = "poisson"

    def __post_init__(self) -> None:
        validate_privacy_inputs(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
        )
        if not isinstance(self.sampling, str) or not self.sampling:
            raise PrivacyInputError(f"sampling must be a non-empty string, got {self.sampling!r}")
