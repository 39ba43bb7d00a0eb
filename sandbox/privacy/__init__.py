"""Privacy accounting: events of what ran -> a maintained accountant -> ε (unit, δ, sampling).

The names below are imported on first use (PEP 562): ``import sandbox.privacy.errors`` (what the CLI
needs to report a bad input) must not import opacus and dp-accounting, which take seconds."""

from __future__ import annotations

import importlib

_FROM_ACCOUNTING = (
    "ACCOUNTANTS",
    "MAX_PRV_GRID_POINTS",
    "NEIGHBOURING_RELATION",
    "UNITS",
    "PrivacyBook",
    "SubsampledGaussianEvent",
    "TreeAggregationEvent",
    "check_delta",
    "default_delta",
    "epsilon_for",
    "joint_noise_multiplier",
    "noise_multiplier_for",
    "validate_privacy_inputs",
)
_FROM_ERRORS = ("AccountingError", "PrivacyInputError", "UnsupportedAccountingError")
__all__ = sorted([*_FROM_ACCOUNTING, *_FROM_ERRORS])


def __getattr__(name: str):
    if name in _FROM_ERRORS:
        return getattr(importlib.import_module("sandbox.privacy.errors"), name)
    if name in _FROM_ACCOUNTING:
        return getattr(importlib.import_module("sandbox.privacy.accounting"), name)
    raise AttributeError(f"module 'sandbox.privacy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
