"""The checks a claim file can state, each judged on a run record → one row of evidence.

Verdict rules are in ``sandbox/claim/__init__.py``'s docstring. A check reads only the record;
a measurement the record lacks is INCONCLUSIVE ("not measured by this run"), a record whose
present sections lack a documented key is bad input (``ClaimError`` naming the key).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
NOT_MEASURED = "not measured by this run"


class ClaimError(ValueError):
    """A claim file, record or run directory that cannot be checked; the message names file and key."""


@dataclass(frozen=True)
class Evidence:
    """One row of the evidence table."""

    check: str
    measured: float | None
    ci: tuple[float, float] | None
    bound: str
    verdict: str
    reason: str
    source: str  # what in the record measured it


class Record:
    """A run record with dotted-key access whose errors name the record and the key."""

    def __init__(self, data: Mapping, origin: str):
        if not isinstance(data, Mapping):
            raise ClaimError(f"{origin}: a run record must be a JSON object")
        self.data, self.origin = data, origin

    def has(self, key: str | tuple[str, ...]) -> bool:
        try:
            return self.get(key) is not None
        except ClaimError:
            return False

    def get(self, key: str | tuple[str, ...]):
        """``"privacy.unit"``, or a tuple of parts for keys with dots (``("audit", "tpr_at_0.1pct_fpr")``)."""
        parts = tuple(key.split(".")) if isinstance(key, str) else key
        node = self.data
        for part in parts:
            if not isinstance(node, Mapping) or part not in node:
                raise ClaimError(f"{self.origin}: {'.'.join(parts)}: missing from the record")
            node = node[part]
        return node

    def number(self, key: str | tuple[str, ...]) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ClaimError(f"{self.origin}: {_dotted(key)}: expected a number, got {value!r}")
        return float(value)

    def interval(self, key: str | tuple[str, ...]) -> tuple[float, float]:
        value = self.get(key)
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ClaimError(f"{self.origin}: {_dotted(key)}: expected a [low, high] interval, got {value!r}")
        return float(value[0]), float(value[1])


def _dotted(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else ".".join(key)


def _ci_verdict(value: float, ci: tuple[float, float], bound: float) -> tuple[str, str]:
    low, high = ci
    if low > bound:
        return FAIL, f"whole CI above {bound:g}: lower end {low:.3f}"
    if high <= bound:
        return PASS, f"CI upper end {high:.3f} ≤ {bound:g}"
    return INCONCLUSIVE, (f"CI [{low:.3f}, {high:.3f}] straddles {bound:g} (point {value:.3f}): too wide to decide; "
                          "more users or a stronger audit narrow it")


def _audit_gate(record: Record, verdict: str, reason: str, require_control: bool) -> tuple[str, str]:
    """The audit's own result overrides: dp_bug fails; a failed (or, if required, absent) positive
    control leaves only FAIL standing."""
    result = record.get("audit.result")
    if result == "dp_bug":
        why = record.get("audit.reason") if record.has("audit.reason") else "empirical ε above the accountant's"
        return FAIL, f"audit result dp_bug: {why}"
    if result == "inconclusive" and verdict != FAIL:
        why = record.get("audit.reason") if record.has("audit.reason") else "positive control failed"
        return INCONCLUSIVE, f"audit inconclusive: {why}" + (f"; and {reason}" if verdict == INCONCLUSIVE else "")
    if verdict == PASS and not record.has("audit.control"):
        if require_control:
            return INCONCLUSIVE, (f"{reason}, but this audit records no positive control: a weak attack is no "
                                  "evidence of privacy (a claim may set require_control: false)")
        reason += "; this audit records no positive control (require_control: false)"
    return verdict, reason


def _membership_source(record: Record, level: str) -> tuple[tuple[str, ...] | None, str]:
    """Where the record keeps membership metrics at ``level`` (harness audits: flat in ``audit``;
    ``audit=suggestions``: under ``audit.membership``), or None and why not."""
    if not record.has("audit"):
        return None, f"{NOT_MEASURED} (no audit section)"
    attack = record.get("audit.attack")
    measured = "canary" if attack == "canary" else record.get("audit.level")
    if measured != level:
        return None, f"{NOT_MEASURED}: its audit is {attack} membership at {measured} level, not {level}"
    return (("audit", "membership") if attack == "suggestions" else ("audit",)), f"audit {attack}, {measured} level"


@dataclass(frozen=True)
class MembershipTPR:
    """Membership TPR at a stated FPR (0.001 or 0.01, as audits record them); upper CI end ≤ max."""

    max: float
    fpr: float = 0.01
    level: str = "user"
    type: ClassVar[str] = "membership_tpr"
    limits: ClassVar[dict] = {"max": (0, 1), "fpr": (0, 1, "()")}
    choices: ClassVar[dict] = {"level": ("user", "example", "canary")}
    keys: ClassVar[dict] = {0.001: "tpr_at_0.1pct_fpr", 0.01: "tpr_at_1pct_fpr"}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = f"membership TPR @ {self.fpr:g} FPR ({self.level})", f"≤ {self.max:g} (CI upper end)"
        prefix, source = _membership_source(record, self.level)
        if prefix is None:
            return Evidence(label, None, None, bound, INCONCLUSIVE, source, "")
        if not any(math.isclose(self.fpr, f) for f in self.keys):
            why = f"{NOT_MEASURED}: audits record TPR at FPR 0.001 and 0.01 only"
            return Evidence(label, None, None, bound, INCONCLUSIVE, why, source)
        fpr = next(f for f in self.keys if math.isclose(self.fpr, f))
        if prefix[-1] == "membership":  # {"0.001": …, "0.01": …}
            key, ci_key = ("tpr_at_fpr", str(fpr)), ("tpr_at_fpr_ci", str(fpr))
        else:
            key, ci_key = (self.keys[fpr],), (f"{self.keys[fpr]}_ci",)
        value, ci = record.number(prefix + key), record.interval(prefix + ci_key)
        verdict, reason = _audit_gate(record, *_ci_verdict(value, ci, self.max), require_control)
        if fpr * record.number((*prefix, "n_nonmembers")) < 1:  # see sandbox.audit.metrics
            reason += f" (under 1/{fpr:g} non-members: read at FPR 0)"
        return Evidence(label, value, ci, bound, verdict, reason, source)


@dataclass(frozen=True)
class MembershipAUC:
    """Membership AUC (0.5 = chance); upper CI end ≤ max."""

    max: float
    level: str = "user"
    type: ClassVar[str] = "membership_auc"
    limits: ClassVar[dict] = {"max": (0, 1)}
    choices: ClassVar[dict] = {"level": ("user", "example", "canary")}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = f"membership AUC ({self.level})", f"≤ {self.max:g} (CI upper end)"
        prefix, source = _membership_source(record, self.level)
        if prefix is None:
            return Evidence(label, None, None, bound, INCONCLUSIVE, source, "")
        value, ci = record.number((*prefix, "auc")), record.interval((*prefix, "auc_ci"))
        verdict, reason = _audit_gate(record, *_ci_verdict(value, ci, self.max), require_control)
        return Evidence(label, value, ci, bound, verdict, reason, source)


@dataclass(frozen=True)
class CanaryExposure:
    """Exposure in bits (mean or max over canaries whose host trained) ≤ max; the record has no CI."""

    max: float
    method: str = "rank"
    statistic: str = "mean"
    min_canaries: int = 1
    type: ClassVar[str] = "canary_exposure"
    limits: ClassVar[dict] = {"max": (0, math.inf), "min_canaries": (1, math.inf)}
    choices: ClassVar[dict] = {"method": ("rank", "fit"), "statistic": ("mean", "max")}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = f"canary exposure, {self.statistic} by {self.method} (bits)", f"≤ {self.max:g}"
        if not record.has("audit") or record.get("audit.attack") != "canary":
            return Evidence(label, None, None, bound, INCONCLUSIVE, f"{NOT_MEASURED} (no audit=canary)", "")
        stats = ("audit", "canaries", f"exposure_by_{self.method}", "trained_hosts")
        n = int(record.number((*stats, "n")))
        value = record.number((*stats, self.statistic)) if record.has((*stats, self.statistic)) else None
        source = f"audit canary, {n} canaries whose host trained"
        if not n or value is None:
            return Evidence(label, None, None, bound, INCONCLUSIVE, "no planted canary's host trained", source)
        ceiling = record.number("audit.canaries.max_exposure_possible_by_rank")
        if n < self.min_canaries:  # no CI is recorded: the count is what guards against noise
            verdict, reason = INCONCLUSIVE, (f"{value:.2f} bits from {n} canaries whose host trained; "
                                             f"the check needs ≥ {self.min_canaries}")
        elif value > self.max:
            verdict, reason = FAIL, f"{value:.2f} bits > {self.max:g}"
        elif self.method == "rank" and ceiling <= self.max:
            verdict, reason = INCONCLUSIVE, (f"by rank this run cannot measure above {ceiling:.2f} bits (log2 of "
                                             f"fresh canaries + 1) ≤ {self.max:g}: add data.n_fresh_canaries")
        else:
            verdict, reason = PASS, f"{value:.2f} bits ≤ {self.max:g} (point value: no CI recorded)"
        return Evidence(label, value, None, bound, *_audit_gate(record, verdict, reason, require_control), source)


@dataclass(frozen=True)
class Extraction:
    """At most ``max_extracted`` of ≥ ``min_canaries`` canaries reproduced by the model."""

    max_extracted: int = 0
    min_canaries: int = 1
    type: ClassVar[str] = "extraction"
    limits: ClassVar[dict] = {"max_extracted": (0, math.inf), "min_canaries": (1, math.inf)}
    choices: ClassVar[dict] = {}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = "canaries extracted", f"≤ {self.max_extracted} of ≥ {self.min_canaries}"
        if not record.has("audit.extraction"):
            return Evidence(label, None, None, bound, INCONCLUSIVE, NOT_MEASURED, "")
        n, k = record.number("audit.extraction.n_canaries"), record.number("audit.extraction.n_extracted")
        source = f"audit {record.get('audit.attack')}, {n:g} canaries tried"
        if k > self.max_extracted:
            verdict, reason = FAIL, f"{k:g} of {n:g} canaries extracted"
        elif n < self.min_canaries:
            verdict, reason = INCONCLUSIVE, f"only {n:g} canaries tried, the check needs ≥ {self.min_canaries}"
        else:
            verdict, reason = PASS, f"{k:g} of {n:g} canaries extracted"
        return Evidence(label, k, None, bound, *_audit_gate(record, verdict, reason, require_control), source)


@dataclass(frozen=True)
class AttributeAdvantage:
    """Attribute-inference advantage (TPR − FPR): the members − non-members ``gap`` or the ``members``'."""

    max: float
    field: str = "gap"
    type: ClassVar[str] = "attribute_advantage"
    limits: ClassVar[dict] = {"max": (-1, 1)}
    choices: ClassVar[dict] = {"field": ("gap", "members")}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = f"attribute advantage, {self.field}", f"≤ {self.max:g} (CI upper end)"
        if not record.has("audit.attribute"):
            return Evidence(label, None, None, bound, INCONCLUSIVE, f"{NOT_MEASURED} (no attribute audit)", "")
        name = record.get("audit.attribute.name") if record.has("audit.attribute.name") else "?"
        source, result = f"audit {record.get('audit.attack')}, attribute {name!r}", record.get("audit.attribute.result")
        if result != "measured":
            why = record.get("audit.attribute.reason") if record.has("audit.attribute.reason") else ""
            return Evidence(label, None, None, bound, INCONCLUSIVE, f"{NOT_MEASURED}: attribute audit {result}: {why}",
                            source)
        key = "audit.attribute.gap" if self.field == "gap" else "audit.attribute.members.advantage"
        value, ci = record.number(key), record.interval(key + "_ci")
        verdict, reason = _audit_gate(record, *_ci_verdict(value, ci, self.max), require_control)
        return Evidence(label, value, ci, bound, verdict, reason, source)


@dataclass(frozen=True)
class Epsilon:
    """The accountant's ε ≤ max for the stated unit (equal) and δ (record δ ≤ stated δ)."""

    max: float
    delta: float
    unit: str = "user"
    type: ClassVar[str] = "epsilon"
    limits: ClassVar[dict] = {"max": (0, math.inf, "()"), "delta": (0, 1, "()")}
    choices: ClassVar[dict] = {"unit": ("example", "user", "workspace")}

    def judge(self, record: Record, *, require_control: bool = True) -> Evidence:
        label, bound = f"ε ({self.unit} level)", f"≤ {self.max:g} at δ ≤ {self.delta:g}"
        eps, unit, delta = (record.get(f"privacy.{k}") for k in ("epsilon", "unit", "delta"))
        accountant = record.get("privacy.accountant")
        source = f"privacy: {record.get('privacy.mechanism')}, {accountant or 'no'} accountant"
        value = None if eps is None else record.number("privacy.epsilon")
        if record.has("audit") and record.get("audit.result") == "dp_bug":
            verdict, reason = FAIL, "the audit measured ε above the accountant's (dp_bug): the accounting is wrong"
        elif value is None:
            verdict, reason = FAIL, "not private: the run has no ε"
        elif unit != self.unit:
            verdict, reason = FAIL, f"ε is {unit}-level; a {self.unit}-level claim needs a {self.unit}-level ε"
        elif delta is None or record.number("privacy.delta") > self.delta:
            verdict, reason = FAIL, f"record δ = {delta} is not ≤ the stated δ = {self.delta:g}"
        elif value > self.max:
            verdict, reason = FAIL, f"ε = {value:.3f} > {self.max:g}"
        elif accountant == "gdp":
            verdict, reason = INCONCLUSIVE, "gdp is a CLT approximation that can under-state ε: use rdp or prv"
        else:
            verdict, reason = PASS, f"ε = {value:.3f} ≤ {self.max:g} ({unit}, δ = {delta:g}, {accountant})"
        return Evidence(label, value, None, bound, verdict, reason, source)


CHECKS = {c.type: c for c in (MembershipTPR, MembershipAUC, CanaryExposure, Extraction, AttributeAdvantage, Epsilon)}
