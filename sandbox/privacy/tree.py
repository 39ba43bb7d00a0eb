"""Accounting for DP-FTRL with tree aggregation and restarts: dp-accounting's RDP accountant.

A run of DP-FTRL (Kairouz et al. 2021, arXiv 2103.00039, "tree restart") is a sequence of trees, one
per epoch of the participation schedule; each unit takes part in at most one round of a tree. One tree
is dp-accounting's ``SingleEpochTreeAggregationDpEvent(noise_multiplier, steps)``; the trees of a run
compose (``ComposedDpEvent`` of ``SelfComposedDpEvent``\\ s), because a unit may appear once in every
tree. dp-accounting analyses it under ``REPLACE_SPECIAL`` (replace one unit's data with a special,
zero-contribution record), its RDP accountant only. No accounting math lives here: events are
translated and handed to ``dp_accounting.rdp.RdpAccountant``.

Mixed with Poisson-subsampled Gaussian events (the ledger composes a data set's runs), those become
``PoissonSampledDpEvent(q, GaussianDpEvent(σ))``, which dp-accounting also analyses under
``REPLACE_SPECIAL``: the composition is one RDP sum in one accountant.
"""

from __future__ import annotations

from collections.abc import Sequence

import dp_accounting
from dp_accounting.rdp import RdpAccountant

from sandbox.privacy.events import (
    AccountingError,
    PrivacyEvent,
    PrivacyInputError,
    SubsampledGaussianEvent,
    TreeAggregationEvent,
    UnsupportedAccountingError,
    validate_privacy_inputs,
)

RELATION = dp_accounting.NeighboringRelation.REPLACE_SPECIAL


def has_tree(events: Sequence[PrivacyEvent]) -> bool:
    return any(isinstance(e, TreeAggregationEvent) for e in events)


def dp_event(events: Sequence[PrivacyEvent]) -> dp_accounting.DpEvent:
    """The composition of ``events`` as one dp-accounting event (consecutive equal trees self-composed)."""
    parts: list[tuple[dp_accounting.DpEvent, int]] = []
    for event in events:
        if isinstance(event, TreeAggregationEvent):
            one = dp_accounting.SingleEpochTreeAggregationDpEvent(
                noise_multiplier=event.noise_multiplier, step_counts=event.steps
            )
            count = 1
        elif isinstance(event, SubsampledGaussianEvent):
            if event.sampling != "poisson":
                raise UnsupportedAccountingError(
                    f"sampling {event.sampling!r} cannot be composed with tree aggregation: only poisson"
                )
            one = dp_accounting.PoissonSampledDpEvent(
                sampling_probability=event.sample_rate,
                event=dp_accounting.GaussianDpEvent(noise_multiplier=event.noise_multiplier),
            )
            count = event.steps
        else:
            raise PrivacyInputError(f"not a privacy event: {event!r}")
        if parts and parts[-1][0] == one:
            parts[-1] = (one, parts[-1][1] + count)
        else:
            parts.append((one, count))
    return dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(e, n) for e, n in parts])


def tree_epsilon(*, events: Sequence[PrivacyEvent], delta: float, accountant: str) -> float:
    """ε at ``delta`` of ``events`` (at least one a tree) by dp-accounting's RDP accountant.

    Refuses (UnsupportedAccountingError) any accountant but ``rdp``: dp-accounting analyses
    tree aggregation with RDP only, and nothing is approximated."""
    validate_privacy_inputs(delta=delta)
    if accountant != "rdp":
        raise UnsupportedAccountingError(
            f"accountant {accountant!r} cannot account for tree aggregation (DP-FTRL): dp-accounting "
            "analyses SingleEpochTreeAggregationDpEvent with its RDP accountant only; use accountant=rdp"
        )
    if not events:
        return 0.0
    rdp = RdpAccountant(neighboring_relation=RELATION)
    event = dp_event(events)
    if not rdp.supports(event):
        raise UnsupportedAccountingError(f"dp-accounting's RDP accountant does not support {event}")
    try:
        return float(rdp.compose(event).get_epsilon(delta))
    except (ValueError, ArithmeticError) as error:
        raise AccountingError(f"dp-accounting's RDP accountant failed: {error}") from error


def tree_steps(*, rounds: int, rounds_per_tree: int) -> tuple[int, ...]:
    """The rounds of each tree when the tree restarts every ``rounds_per_tree`` rounds (the last may be short)."""
    full, rest = divmod(int(rounds), int(rounds_per_tree))
    return (int(rounds_per_tree),) * full + ((rest,) if rest else ())


def tree_events(noise_multiplier: float, steps: Sequence[int]) -> list[TreeAggregationEvent]:
    return [TreeAggregationEvent(noise_multiplier=float(noise_multiplier), steps=int(s)) for s in steps]


def tree_noise_multiplier_for(*, target_epsilon: float, delta: float, steps: Sequence[int]) -> float:
    """The smallest z (within 1e-6) whose ε over trees of ``steps`` rounds is ≤ ``target_epsilon``:
    dp-accounting's ``calibrate_dp_mechanism`` (Brent's method) over its RDP accountant."""
    validate_privacy_inputs(delta=delta, target_epsilon=target_epsilon)
    if not steps:
        raise PrivacyInputError("tree steps must be non-empty")
    try:
        z = dp_accounting.calibrate_dp_mechanism(
            lambda: RdpAccountant(neighboring_relation=RELATION),
            lambda z: dp_event(tree_events(z, steps)),
            target_epsilon,
            delta,
            dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
        )
    except (ValueError, ArithmeticError, dp_accounting.mechanism_calibration.NoBracketIntervalFoundError) as error:
        raise AccountingError(f"could not calibrate DP-FTRL's noise for ε = {target_epsilon}: {error}") from error
    return float(z)
