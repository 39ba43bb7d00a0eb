"""Pareto-optimal runs over (ε, utility, attack success). Pure functions, no I/O.

Directions: a lower ε is better (a non-private run has ε = ∞), a higher utility is better, a
lower attack success is better. Attack success is optional: a run without an audit has none.

Dominance, precisely: run ``b`` dominates run ``a`` when, on every criterion that *both* runs
have, ``b`` is at least as good as ``a``, and on at least one of them ``b`` is strictly better:

    ε_b ≤ ε_a  and  u_b ≥ u_a  and  (s_b ≤ s_a, only if both runs were audited)
    and at least one of these comparisons strict.

So two audited runs are compared on (ε, utility, attack); a pair in which either run has no
audit is compared on (ε, utility) only. Equal points (a tie on every shared criterion) do not
dominate each other: both can be Pareto-optimal. ε = ∞ ≤ ∞ holds, so non-private runs are
compared with each other on utility (and attack), and a non-private run is never better than
a private one on ε. A run is Pareto-optimal when no other run dominates it. Values are the
records' point estimates: confidence intervals are not taken into account.

The frontier cannot be empty when there are runs: a cycle of dominance would need equal ε and
utility all round, and then only the attack (a total order) can decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Objectives:
    """One run's position: ``epsilon`` (math.inf if not private), ``utility``, ``attack`` (None: no audit)."""

    epsilon: float
    utility: float
    attack: float | None = None

    def __post_init__(self):
        if math.isnan(self.epsilon) or self.epsilon < 0:
            raise ValueError(f"epsilon must be ≥ 0 or inf, got {self.epsilon}")
        if not math.isfinite(self.utility):
            raise ValueError(f"utility must be finite, got {self.utility}")
        if self.attack is not None and not math.isfinite(self.attack):
            raise ValueError(f"attack must be finite or None, got {self.attack}")


@dataclass(frozen=True)
class ParetoResult:
    """``optimal``: no other run dominates this one; ``dominated_by``: the index of the first run
    that does (None if optimal); ``with_attack``: whether this run has an attack value at all
    (False: it was only ever compared on ε and utility)."""

    optimal: bool
    dominated_by: int | None
    with_attack: bool


def dominates(b: Objectives, a: Objectives) -> bool:
    """True when ``b`` dominates ``a`` (see the module docstring for the definition)."""
    pairs = [(b.epsilon, a.epsilon), (a.utility, b.utility)]  # each pair: (should be ≤, than)
    if b.attack is not None and a.attack is not None:
        pairs.append((b.attack, a.attack))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_front(points: Sequence[Objectives]) -> list[ParetoResult]:
    """For each point, whether it is Pareto-optimal among ``points`` and, if not, who dominates it.

    Call it once per task: utilities of different tasks are different metrics.
    """
    results = []
    for i, a in enumerate(points):
        by = next((j for j, b in enumerate(points) if j != i and dominates(b, a)), None)
        results.append(ParetoResult(optimal=by is None, dominated_by=by, with_attack=a.attack is not None))
    return results
