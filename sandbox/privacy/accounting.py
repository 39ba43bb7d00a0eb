"""Privacy accounting for Poisson-subsampled Gaussian mechanisms (DP-SGD, DP-FedAvg).

What ran is recorded as immutable events (events.py); ε is computed late, by a
maintained Opacus accountant (``rdp``, ``prv``, ``gdp``) whose ``history`` format
``[(noise_multiplier, sample_rate, steps), ...]`` the events map onto one-to-one.
No accounting math lives here: this module validates, translates and refuses.

Neighbouring relation: every ε from this module is for add/remove-one neighbours of
the accounting unit (one example, one user or one workspace), the relation under
which the Poisson-subsampled Gaussian analyses hold. Other sampling schemes need
analyses these accountants do not implement, so they are refused, not approximated.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

from opacus.accountants.utils import get_noise_multiplier

from sandbox.privacy.accountants import MAX_PRV_GRID_POINTS, build_accountant, registry_name
from sandbox.privacy.delta import check_delta, default_delta
from sandbox.privacy.events import (
    ACCOUNTANTS,
    NEIGHBOURING_RELATION,
    UNITS,
    AccountingError,
    PrivacyEvent,
    PrivacyInputError,
    SubsampledGaussianEvent,
    TreeAggregationEvent,
    UnsupportedAccountingError,
    check_choice,
    check_positive,
    event_from_json,
    joint_noise_multiplier,
    validate_privacy_inputs,
)
from sandbox.privacy.tree import has_tree, tree_epsilon

_NUMERICAL_FAILURES = (ValueError, RuntimeError, ArithmeticError)


def _history(events: Sequence[SubsampledGaussianEvent]) -> list[tuple[float, float, int]]:
    """Opacus history from events, consecutive identical (σ, q) phases merged."""
    history: list[tuple[float, float, int]] = []
    for event in events:
        if event.sampling not in NEIGHBOURING_RELATION:
            raise UnsupportedAccountingError(
                f"sampling must be one of {tuple(NEIGHBOURING_RELATION)} for the "
                f"subsampled-Gaussian accountants {ACCOUNTANTS}, got {event.sampling!r}: "
                "fixed-size or shuffled batches need a replace-one analysis these "
                "accountants do not implement, so it is refused rather than approximated"
            )
        if history and history[-1][:2] == (event.noise_multiplier, event.sample_rate):
            sigma, rate, steps = history.pop()
            history.append((sigma, rate, steps + event.steps))
        else:
            history.append((event.noise_multiplier, event.sample_rate, event.steps))
    return history


def epsilon_for(*, events: Sequence[PrivacyEvent], delta: float, accountant: str) -> float:
    """ε at ``delta`` for the composition of ``events`` (add/remove-one neighbours).

    Accountants (all Opacus):
      * ``rdp``: Rényi DP of the Poisson-subsampled Gaussian (Mironov et al. 2019),
        converted with Balle et al. 2020, Thm 21; a sound upper bound.
      * ``prv``: numerical composition of privacy loss random variables (Gopi et al.
        2021); returns the upper end of its error interval (eps_error 0.01, delta_error
        δ/1000), so an upper bound up to discretisation; tighter than RDP.
      * ``gdp``: Gaussian DP via the central limit theorem (Bu et al. 2020), an
        APPROXIMATION that can underestimate ε (few steps, large q); one (σ, q) phase
        only; 0.0 or inf at the ends of its [0, 500] root bracket (accountants.py).
    Zero events give 0.0; ``inf`` means no finite guarantee. Raises PrivacyInputError,
    UnsupportedAccountingError (non-Poisson sampling, multi-phase GDP) or
    AccountingError (the accountant failed numerically or hit a resource guard).

    Events that include a DP-FTRL tree (``TreeAggregationEvent``) are composed, all of them, by
    dp-accounting's RDP accountant instead (``sandbox.privacy.tree``; ``rdp`` only, refused otherwise).
    """
    validate_privacy_inputs(delta=delta)
    check_choice("accountant", accountant, ACCOUNTANTS)
    if has_tree(events):
        return tree_epsilon(events=events, delta=delta, accountant=accountant)
    history = _history(events)
    if not history:
        return 0.0
    if accountant == "gdp" and len(history) > 1:
        raise UnsupportedAccountingError(
            "accountant 'gdp' supports one (noise_multiplier, sample_rate) phase, "
            f"got {len(history)} phases; use 'rdp' or 'prv'"
        )
    opacus_accountant = build_accountant(accountant)
    opacus_accountant.history = history
    try:
        return float(opacus_accountant.get_epsilon(delta=delta))
    except AccountingError:
        raise
    except _NUMERICAL_FAILURES as error:
        raise AccountingError(f"accountant {accountant!r} failed: {error}") from error


def noise_multiplier_for(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str,
    epsilon_tolerance: float = 0.01,
) -> float:
    """σ whose ε after ``steps`` Poisson-sampled steps at rate ``sample_rate`` lies in
    (target_epsilon - epsilon_tolerance, target_epsilon], by Opacus' binary search
    (``get_noise_multiplier``). The accountant caveats of ``epsilon_for`` apply.
    """
    validate_privacy_inputs(sample_rate=sample_rate, steps=steps, delta=delta, target_epsilon=target_epsilon)
    check_positive("epsilon_tolerance", epsilon_tolerance)
    check_choice("accountant", accountant, ACCOUNTANTS)
    try:
        with warnings.catch_warnings():
            # the binary search probes σ far from the answer, where the best RDP order sits
            # at the edge of Opacus' grid; that warning is about the probes, not the result
            warnings.filterwarnings("ignore", message="Optimal order is the")
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=registry_name(accountant),
                epsilon_tolerance=epsilon_tolerance,
            )
    except _NUMERICAL_FAILURES as error:  # includes AccountingError from the PRV guard
        raise AccountingError(
            f"accountant {accountant!r} could not calibrate noise for target_epsilon={target_epsilon}: {error}"
        ) from error
    return float(sigma)


class PrivacyBook:
    """The one place privacy state lives: records what actually ran and computes ε
    through a maintained accountant (``epsilon_for``); ε is never cached.

    unit: what one neighbouring change adds or removes ("example", "user",
    "workspace"); delta and accountant are the defaults of ``epsilon()``.
    """

    def __init__(self, *, unit: str, delta: float, accountant: str) -> None:
        check_choice("unit", unit, UNITS)
        validate_privacy_inputs(delta=delta)
        check_choice("accountant", accountant, ACCOUNTANTS)
        self._unit, self._delta, self._accountant = unit, float(delta), accountant
        self._events: list[PrivacyEvent] = []

    @property
    def unit(self) -> str:
        return self._unit

    @property
    def delta(self) -> float:
        return self._delta

    @property
    def accountant(self) -> str:
        return self._accountant

    @property
    def events(self) -> tuple[PrivacyEvent, ...]:
        return tuple(self._events)

    @property
    def steps(self) -> int:
        return sum(event.steps for event in self._events)

    def record(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int = 1,
        sampling: str = "poisson",
        components: Sequence[tuple[str, float]] = (),
    ) -> None:
        """Record ``steps`` runs that happened; merged into the last event when
        (σ, q, sampling, components) are identical. ``components``: the Gaussian queries
        released together on one sample (see ``SubsampledGaussianEvent``)."""
        validate_privacy_inputs(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        event = SubsampledGaussianEvent(  # plain Python numbers keep state_dict JSON-safe
            noise_multiplier=float(noise_multiplier),
            sample_rate=float(sample_rate),
            steps=int(steps),
            sampling=sampling,
            components=tuple(components),
        )
        last = self._events[-1] if self._events else None
        if last is not None and dataclasses.replace(last, steps=event.steps) == event:
            self._events[-1] = dataclasses.replace(last, steps=last.steps + event.steps)
        else:
            self._events.append(event)

    def record_tree_round(self, *, noise_multiplier: float, new_tree: bool) -> None:
        """One DP-FTRL round that happened: a leaf of the current tree, or the first of a new tree
        (``new_tree``: the tree restarted). Each tree is one ``TreeAggregationEvent``."""
        validate_privacy_inputs(noise_multiplier=noise_multiplier)
        last = self._events[-1] if self._events else None
        if new_tree or not isinstance(last, TreeAggregationEvent) or last.noise_multiplier != noise_multiplier:
            self._events.append(TreeAggregationEvent(noise_multiplier=float(noise_multiplier), steps=1))
        else:
            self._events[-1] = dataclasses.replace(last, steps=last.steps + 1)

    def epsilon(self, delta: float | None = None, accountant: str | None = None) -> float:
        """ε of everything recorded, at ``delta`` (default: the book's) via ``accountant``."""
        return epsilon_for(
            events=self._events,
            delta=self._delta if delta is None else delta,
            accountant=self._accountant if accountant is None else accountant,
        )

    def state_dict(self) -> dict:
        """JSON-serialisable state; ``from_state_dict`` restores it exactly."""
        return {
            "unit": self._unit,
            "delta": self._delta,
            "accountant": self._accountant,
            "events": [event.to_json() for event in self._events],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> PrivacyBook:
        missing = {"unit", "delta", "accountant", "events"} - set(state)
        if missing:
            raise PrivacyInputError(f"privacy state is missing keys {sorted(missing)}")
        book = cls(unit=state["unit"], delta=state["delta"], accountant=state["accountant"])
        for event in state["events"]:
            if event.get("kind") is not None:  # a DP-FTRL tree: kept as it was recorded
                book._events.append(event_from_json(event))
                continue
            book.record(
                noise_multiplier=event["noise_multiplier"],
                sample_rate=event["sample_rate"],
                steps=event["steps"],
                sampling=event["sampling"],
                components=event.get("components", ()),
            )
        return book


__all__ = [
    "ACCOUNTANTS",
    "UNITS",
    "NEIGHBOURING_RELATION",
    "MAX_PRV_GRID_POINTS",
    "AccountingError",
    "PrivacyBook",
    "PrivacyInputError",
    "SubsampledGaussianEvent",
    "TreeAggregationEvent",
    "UnsupportedAccountingError",
    "check_delta",
    "default_delta",
    "epsilon_for",
    "joint_noise_multiplier",
    "noise_multiplier_for",
    "validate_privacy_inputs",
]
