"""Privacy accounting: events of what ran -> a maintained accountant -> ε (unit, δ, sampling)."""

from sandbox.privacy.accounting import (
    ACCOUNTANTS,
    MAX_PRV_GRID_POINTS,
    NEIGHBOURING_RELATION,
    UNITS,
    AccountingError,
    PrivacyBook,
    PrivacyInputError,
    SubsampledGaussianEvent,
    UnsupportedAccountingError,
    check_delta,
    default_delta,
    epsilon_for,
    joint_noise_multiplier,
    noise_multiplier_for,
    validate_privacy_inputs,
)

__all__ = [
    "ACCOUNTANTS",
    "MAX_PRV_GRID_POINTS",
    "NEIGHBOURING_RELATION",
    "UNITS",
    "AccountingError",
    "PrivacyBook",
    "PrivacyInputError",
    "SubsampledGaussianEvent",
    "UnsupportedAccountingError",
    "check_delta",
    "default_delta",
    "epsilon_for",
    "joint_noise_multiplier",
    "noise_multiplier_for",
    "validate_privacy_inputs",
]
