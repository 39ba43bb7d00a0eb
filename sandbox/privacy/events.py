"""What ran, as immutable data, and the validation every privacy input passes once.

An event is ``steps`` consecutive runs of a subsampled Gaussian mechanism: each
unit (example, user or workspace) joins a step's batch with probability
``sample_rate``, the clipped sum gets Gaussian noise of std
``noise_multiplier * clip_norm``. Accountants consume events; see accounting.py.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from sandbox.config.schema import ACCOUNTANTS  # noqa: F401  (re-exported)
from sandbox.privacy.errors import AccountingError, PrivacyInputError, UnsupportedAccountingError  # noqa: F401

UNITS = ("example", "user", "workspace")
# sampling kind -> neighbouring relation under which its ε holds. Only Poisson
# sampling (add/remove one unit) is analysed by the subsampled-Gaussian accountants.
NEIGHBOURING_RELATION = {"poisson": "add/remove one"}


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


def joint_noise_multiplier(multipliers) -> float:
    """The noise multiplier of several Gaussian queries released on one sample: (Σ σ_i⁻²)^-½.

    Each query has sensitivity 1 after scaling by its clip bound (a client's clipped update
    over C; a 0/1 bit); releasing all of them with independent noise σ_i is one Gaussian
    mechanism on the stacked query, whose sensitivity over its noise std is √(Σ σ_i⁻²).
    The same reduction as dp-accounting's ``_effective_gaussian_noise_multiplier`` for a
    ``ComposedDpEvent`` of ``GaussianDpEvent``s inside a ``PoissonSampledDpEvent``.
    """
    values = [float(m) for m in multipliers]
    if not values:
        raise PrivacyInputError("joint_noise_multiplier needs at least one noise multiplier")
    for value in values:
        check_positive("noise_multiplier", value)
    return sum(v**-2 for v in values) ** -0.5


@dataclass(frozen=True)
class SubsampledGaussianEvent:
    """``steps`` consecutive runs of one subsampled Gaussian mechanism.

    noise_multiplier: σ = noise std / clip norm. sample_rate: q in (0, 1], the
    probability that each unit is in a step's batch (Poisson: the expected batch
    fraction). Only ``sampling="poisson"`` can be accounted; other kinds may be
    recorded, so the record stays true, but ε for them raises UnsupportedAccountingError.

    components: when one step releases several Gaussian queries on the same Poisson
    sample (adaptive clipping: the clipped-update sum with z_Δ and the unclipped-count
    with σ_b), each query as ``(name, its noise multiplier)``; ``noise_multiplier`` must then
    be their joint multiplier (``joint_noise_multiplier``), which is what accountants see.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    sampling: str = "poisson"
    components: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        validate_privacy_inputs(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
        )
        if not isinstance(self.sampling, str) or not self.sampling:
            raise PrivacyInputError(f"sampling must be a non-empty string, got {self.sampling!r}")
        try:  # JSON gives lists; keep the event hashable and comparable
            components = tuple((str(name), float(value)) for name, value in self.components)
        except (TypeError, ValueError):
            raise PrivacyInputError(
                f"components must be (name, noise multiplier) pairs, got {self.components!r}"
            ) from None
        object.__setattr__(self, "components", components)
        if components:
            joint = joint_noise_multiplier(value for _, value in components)
            if not math.isclose(joint, self.noise_multiplier, rel_tol=1e-9):
                raise PrivacyInputError(
                    f"noise_multiplier {self.noise_multiplier!r} is not the joint multiplier {joint!r} "
                    f"of its components {components}"
                )

    def to_json(self) -> dict:
        """The event as JSON-native data (``components`` as lists, left out when there are none)."""
        out = {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "sampling": self.sampling,
        }
        if self.components:
            out["components"] = [[name, value] for name, value in self.components]
        return out


# DP-FTRL (Kairouz et al. 2021): no sampling; each unit takes part at most once per tree and the tree
# restarts every k rounds. The tree-aggregation RDP of dp-accounting holds for *replace one unit's data
# with the special (zero) record*, not for add/remove (a removed user would shift the schedule).
TREE_SAMPLING = "none: participation at most once per tree, restarts every k rounds"
TREE_RELATION = "replace one {unit}'s data with the zero record (dp-accounting REPLACE_SPECIAL)"
TREE_KIND = "tree_aggregation"


@dataclass(frozen=True)
class TreeAggregationEvent:
    """One tree of DP-FTRL's tree aggregation: ``steps`` rounds (leaves) between two restarts, Gaussian
    noise of std ``noise_multiplier`` · C on every tree node, each unit in at most one leaf.

    dp-accounting's ``SingleEpochTreeAggregationDpEvent(noise_multiplier, steps)``; a run is the
    composition of its trees (``sandbox.privacy.tree``)."""

    noise_multiplier: float
    steps: int
    sampling: str = TREE_SAMPLING
    kind: str = TREE_KIND
    max_participations: int = 1  # per unit and tree: the only value the accountant covers

    def __post_init__(self) -> None:
        validate_privacy_inputs(noise_multiplier=self.noise_multiplier, steps=self.steps)
        if self.kind != TREE_KIND:
            raise PrivacyInputError(f"kind must be {TREE_KIND!r}, got {self.kind!r}")
        if self.max_participations != 1:
            raise UnsupportedAccountingError(
                f"max_participations must be 1 (each unit at most once per tree), got {self.max_participations!r}: "
                "dp-accounting's tree-aggregation RDP covers one participation per tree only"
            )

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "noise_multiplier": self.noise_multiplier,
            "steps": self.steps,
            "sampling": self.sampling,
            "max_participations": self.max_participations,
        }


PrivacyEvent = SubsampledGaussianEvent | TreeAggregationEvent


def event_fields(event: dict) -> tuple[str, ...]:
    """The keys an event of this JSON form may have (``kind`` selects the class)."""
    cls = TreeAggregationEvent if event.get("kind") == TREE_KIND else SubsampledGaussianEvent
    return tuple(f.name for f in fields(cls))


def event_from_json(event: dict) -> PrivacyEvent:
    """The event a record, a ledger entry or a book's state holds (``to_json``'s inverse)."""
    if event.get("kind") == TREE_KIND:
        return TreeAggregationEvent(**event)
    if "kind" in event:
        raise PrivacyInputError(f"unknown event kind {event['kind']!r} (known: {TREE_KIND!r} or none)")
    return SubsampledGaussianEvent(**event)
