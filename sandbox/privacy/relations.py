"""Neighbouring relations, and what an (ε, δ) guarantee for one relation says about another.

Every ε an accountant gives here holds for **add/remove one unit** (one example, one user or
one workspace) under Poisson sampling. Audits and the ledger ask about other relations:

* *replace one unit* (a unit present in both worlds, its data changed): two add/remove steps
  (remove it, add the changed one);
* *a change inside one coarser unit* (one example added to or removed from a user who trains
  in both worlds; a canary toggled inside its host): to a user-level guarantee this is a
  replace of that user, so also two steps;
* *a group*: ``k`` units changed together, or one coarser unit made of ``k`` finer ones
  (a user with at most ``k`` examples, by an enforced cap): ``k`` steps. Without a cap the
  number of steps is unbounded and no finite ε follows.

``k`` add/remove steps give, by the triangle chain of (ε, δ)-DP (Dwork & Roth 2014, group
privacy, with the δ terms kept exact): ``(k·ε, δ·Σ_{i<k} e^{iε})``. For pure DP (δ = 0) this
is the familiar ``k·ε``. It is a conversion of the final (ε, δ), so it is loose (an RDP group
conversion can be tighter), never too low.

``max_auc(ε, δ)`` is the largest ROC AUC any membership test can reach against an (ε, δ)-DP
mechanism: the area under the tightest trade-off curve ``TPR ≤ min(e^ε·FPR + δ,
1 − e^{−ε}(1 − δ − FPR))`` (Kairouz et al. 2015; Dong, Roth & Su 2022). ε = 1, δ = 0 gives
0.731.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# units from the finest to the coarsest: a coarser unit is a group of finer ones
UNIT_ORDER = ("example", "user", "workspace")
KINDS = ("add/remove", "replace", "inside")


@dataclass(frozen=True)
class Relation:
    """A neighbouring relation between two data sets.

    kind: ``add/remove`` (``size`` units of ``unit`` added or removed), ``replace`` (``size``
    units present in both, their data changed) or ``inside`` (``size`` units of ``unit`` added
    or removed *inside* one ``within`` unit that is present in both worlds, such as a canary
    message toggled inside a host user who trains either way).
    """

    kind: str
    unit: str
    size: int = 1
    within: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"relation kind must be one of {KINDS}, got {self.kind!r}")
        for u in (self.unit, self.within):
            if u is not None and u not in UNIT_ORDER:
                raise ValueError(f"relation unit must be one of {UNIT_ORDER}, got {u!r}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"relation size must be an integer >= 1, got {self.size!r}")
        if (self.kind == "inside") != (self.within is not None):
            raise ValueError("relation 'inside' needs `within` (the unit present in both worlds), and only it")
        if self.within is not None and UNIT_ORDER.index(self.within) <= UNIT_ORDER.index(self.unit):
            raise ValueError(f"an 'inside' relation needs `within` coarser than {self.unit!r}, got {self.within!r}")

    def __str__(self) -> str:
        what = f"one {self.unit}" if self.size == 1 else f"a group of {self.size} {self.unit}s"
        if self.kind == "add/remove":
            return f"add/remove {what}"
        if self.kind == "replace":
            return f"replace {what}"
        return f"add/remove {what} inside one {self.within} present in both worlds"


ADD_REMOVE = {u: Relation("add/remove", u) for u in UNIT_ORDER}


@dataclass(frozen=True)
class Implied:
    """The guarantee an accountant's (ε, δ) at ``unit`` gives for ``relation``: ``steps``
    add/remove steps of ``unit``, composed by group privacy; ``epsilon`` inf when unbounded."""

    epsilon: float
    delta: float
    steps: float  # add/remove steps of the guarantee's unit; inf when unbounded
    conversion: str

    @property
    def finite(self) -> bool:
        return math.isfinite(self.epsilon)


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(ε, δ) for ``k`` add/remove steps: ``(k·ε, δ·Σ_{i<k} e^{iε})`` (triangle chain)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"group size must be an integer >= 1, got {k!r}")
    if not (epsilon >= 0 and delta >= 0):  # NaN fails too
        raise ValueError(f"need ε >= 0 and δ >= 0, got ε={epsilon!r}, δ={delta!r}")
    if k == 1:
        return float(epsilon), float(delta)
    if math.isinf(epsilon):
        return math.inf, float(delta) if delta == 0 else math.inf
    if epsilon == 0:
        return 0.0, float(k * delta)
    try:
        chain = math.expm1(k * epsilon) / math.expm1(epsilon)  # Σ_{i<k} e^{iε}
    except OverflowError:
        chain = math.inf
    return k * float(epsilon), float(delta * chain) if delta else 0.0


def _steps(unit: str, relation: Relation, caps: dict[str, int] | None) -> tuple[float, str]:
    """Add/remove steps of ``unit`` that ``relation`` needs, and why."""
    g, r = UNIT_ORDER.index(unit), UNIT_ORDER.index(relation.unit)
    caps = caps or {}
    if relation.kind == "inside":
        w = UNIT_ORDER.index(relation.within)
        if g >= w:  # the guarantee's unit contains the change: that unit is replaced
            return 2, (f"a change inside one {relation.within} is a replace of that {unit}: 2 add/remove steps")
        relation = Relation("add/remove", relation.unit, relation.size)  # finer guarantee: the change itself
        g, r = UNIT_ORDER.index(unit), UNIT_ORDER.index(relation.unit)
    per = 1 if relation.kind == "add/remove" else 2
    if g == r:
        return per * relation.size, (f"{relation}: {per * relation.size} add/remove step(s) of one {unit}")
    if g > r:  # a finer change inside coarser guarantee units: each touched unit is replaced (worst case)
        return 2 * relation.size, (
            f"{relation}: each changes one {unit} present in both worlds, a replace = 2 add/remove steps"
        )
    # coarser change, finer guarantee: each coarse unit is a group of finer ones, bounded only by a cap
    k = 1
    for level in UNIT_ORDER[g + 1 : r + 1]:  # e.g. user → examples per user; workspace → users per workspace
        cap = caps.get(level)
        if cap is None:
            return math.inf, (
                f"{relation} vs {'an' if unit[0] in 'aeiou' else 'a'} {unit}-level ε: a {level} is a group of {UNIT_ORDER[UNIT_ORDER.index(level) - 1]}s "
                f"of unbounded size (no per-{level} contribution cap recorded): no finite ε follows"
            )
        k *= int(cap)
    return per * relation.size * k, (
        f"{relation}: group privacy over ≤ {k} {unit}s each (recorded cap), {per * relation.size * k} add/remove steps"
    )


def implied(
    epsilon: float, delta: float, *, unit: str, relation: Relation, caps: dict[str, int] | None = None
) -> Implied:
    """What an add/remove-one-``unit`` (ε, δ) guarantee gives for ``relation``.

    ``caps``: enforced contribution caps, ``{"user": max examples per user, "workspace": max
    users per workspace}``; a coarser relation without its cap gives ε = inf.
    """
    if unit not in UNIT_ORDER:
        raise ValueError(f"unit must be one of {UNIT_ORDER}, got {unit!r}")
    steps, why = _steps(unit, relation, caps)
    if math.isinf(steps):
        return Implied(math.inf, math.inf, math.inf, why)
    eps, dlt = group_privacy(epsilon, delta, int(steps))
    if steps == 1:
        why = f"{relation}: the accountant's relation itself"
    else:
        why += f", group privacy (kε, δ·Σe^(iε)) with k = {int(steps)}"
    return Implied(eps, dlt, steps, why)


def max_auc(epsilon: float, delta: float) -> float:
    """The largest ROC AUC a membership test can reach against an (ε, δ)-DP mechanism.

    The area under TPR = 1 − f(FPR) for the tightest (ε, δ) trade-off function
    f(x) = max(0, 1 − δ − e^ε·x, e^−ε·(1 − δ − x)); its two linear pieces meet at
    x* = (1 − δ)/(1 + e^ε) and it reaches 0 at x = 1 − δ.
    """
    if not (epsilon >= 0 and 0 <= delta <= 1):
        raise ValueError(f"need ε >= 0 and δ in [0, 1], got ε={epsilon!r}, δ={delta!r}")
    if math.isinf(epsilon) or delta >= 1:
        return 1.0
    a = 1.0 - delta
    x = a / (1.0 + math.exp(epsilon))
    area_f = a * x - math.exp(epsilon) * x * x / 2 + math.exp(-epsilon) * (a - x) ** 2 / 2
    return 1.0 - area_f
