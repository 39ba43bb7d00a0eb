"""The checks a claim file can state, each judged on a run record → one row of evidence.

Verdict rules are in ``sandbox/claim/__init__.py``'s docstring. A check reads only the record;
a measurement the record lacks is INCONCLUSIVE ("not measured by this run"), a record whose
present sections lack a documented key is bad input (``ClaimError`` naming the key).

Each check first *measures* (``measure``: the statistic against the bound, no audit state),
then ``judge`` applies the audit's own result (the audit gate) and ``judge_row`` the control:
the same measurement on the record's control view (``control_view``: the non-private model of
the same pipeline), which decides whether the row discriminates. The records themselves are
checked before any of this, in ``sandbox.claim.record_checks``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from sandbox.record import RunRecord

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
PIPELINE_AUDITS = ("canary_clients", "server_view")  # audits of the federated round loop, not of membership
NOT_APPLICABLE = "N/A"  # a check for federated pipelines on a central run: counts in no verdict
NOT_MEASURED = "not measured by this run"
NO_CONTROL = "no control on this statistic"
NOT_DISCRIMINATING = "does not discriminate"
SEEDED_NOISE = (
    "seeded noise (research mode): anyone holding the record can regenerate and subtract the noise; no DP guarantee"
)
NO_NOISE_SOURCE = (
    "record does not state its noise source (written before secure noise): its noise was seeded from the recorded seed"
)


class ClaimError(ValueError):
    """A claim file, record or run directory that cannot be checked; the message names file and key."""


@dataclass(frozen=True)
class Evidence:
    """One row of the evidence table.

    ``control``: what the control (the non-private model of the same pipeline) measured on the
    same statistic and how the same check judges it ("AUC 0.871 [0.859, 0.882]: FAIL"), or why
    there is none; "—" for ε rows. ``discriminates``: True when the control FAILs the check,
    False when it was judged and does not, None when there is nothing to compare (ε rows, no
    control measurement).
    """

    check: str
    measured: float | None
    ci: tuple[float, float] | None
    bound: str
    verdict: str
    reason: str
    source: str  # what in the record measured it
    control: str = "—"
    discriminates: bool | None = None


class Record:
    """A run record (``sandbox.record.RunRecord``, checked on reading) with dotted-key access to its
    open-ended sections (the audit's measurements) whose errors name the record and the key.

    ``run``: the typed record (None for a control view, whose ``data`` is the record with the
    control's audit in place of the run's). ``path``: the record.json it was read from (None for
    a record given as a dict)."""

    def __init__(self, data, origin: str, path: Path | None = None):
        self.run = data if isinstance(data, RunRecord) else None
        data = data.to_json() if self.run is not None else data
        if not isinstance(data, Mapping):
            raise ClaimError(f"{origin}: a run record must be a JSON object")
        self.data, self.origin, self.path = data, origin, path

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
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise ClaimError(f"{self.origin}: {_dotted(key)}: expected a [low, high] interval, got {value!r}")
        return float(value[0]), float(value[1])


def _dotted(key: str | tuple[str, ...]) -> str:
    return key if isinstance(key, str) else ".".join(key)


@dataclass(frozen=True)
class Measurement:
    """A check's reading of one record: the statistic against the bound, before the audit gate
    and the control.

    ``judged``: the statistic was measured with what the check needs to compare it with the
    bound (a CI that straddles the bound counts as judged; too few canaries, a TPR at an FPR
    the non-members cannot resolve, or a statistic the audit did not measure do not).
    ``summary``: the statistic as measured, for the control column ("AUC 0.871 [0.859, 0.882]")."""

    value: float | None
    ci: tuple[float, float] | None
    verdict: str
    reason: str
    source: str
    judged: bool
    summary: str = ""


def _not_measured(reason: str, source: str = "") -> Measurement:
    return Measurement(None, None, INCONCLUSIVE, reason, source, judged=False)


def _ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _ci_verdict(value: float, ci: tuple[float, float], bound: float) -> tuple[str, str]:
    low, high = ci
    if low > bound:
        return FAIL, f"whole CI above {bound:g}: lower end {low:.3f}"
    if high <= bound:
        return PASS, f"CI upper end {high:.3f} ≤ {bound:g}"
    return INCONCLUSIVE, (
        f"CI [{low:.3f}, {high:.3f}] straddles {bound:g} (point {value:.3f}): too wide to decide; "
        "more users or a stronger audit narrow it"
    )


def _audit_gate(record: Record, verdict: str, reason: str) -> tuple[str, str]:
    """The audit's own result overrides: dp_bug fails; a failed positive control leaves only FAIL standing."""
    result = record.get("audit.result")
    if result == "dp_bug":
        why = record.get("audit.reason") if record.has("audit.reason") else "empirical ε above the accountant's"
        return FAIL, f"audit result dp_bug: {why}"
    if result == "inconclusive" and verdict != FAIL:
        why = record.get("audit.reason") if record.has("audit.reason") else "positive control failed"
        return INCONCLUSIVE, f"audit inconclusive: {why}" + (f"; and {reason}" if verdict == INCONCLUSIVE else "")
    return verdict, reason


class _Check:
    """What every non-ε check shares: ``judge`` = ``measure`` + the audit gate."""

    discriminating: ClassVar[bool] = True  # judged on a control view too (ε is a guarantee, not a measurement)

    def measure(self, record: Record) -> Measurement:
        raise NotImplementedError

    def judge(self, record: Record, *, gate: bool = True) -> Evidence:
        """This check's row on ``record``; ``gate=False`` ignores the audit's own result (a control view)."""
        m = self.measure(record)
        verdict, reason = m.verdict, m.reason
        if gate and m.value is not None:
            verdict, reason = _audit_gate(record, verdict, reason)
        return Evidence(self.row_label, m.value, m.ci, self.row_bound, verdict, reason, m.source)


def _membership_source(record: Record, level: str) -> tuple[tuple[str, ...] | None, str]:
    """Where the record keeps membership metrics at ``level`` (harness audits: flat in ``audit``;
    ``audit=suggestions``: under ``audit.membership``), or None and why not."""
    if not record.has("audit"):
        return None, f"{NOT_MEASURED} (no audit section)"
    attack = record.get("audit.attack")
    if attack in PIPELINE_AUDITS:
        return None, f"{NOT_MEASURED}: its audit is {attack}, which measures the federated pipeline, not membership"
    measured = "canary" if attack == "canary" else record.get("audit.level")
    if measured != level:
        return None, f"{NOT_MEASURED}: its audit is {attack} membership at {measured} level, not {level}"
    return (("audit", "membership") if attack == "suggestions" else ("audit",)), f"audit {attack}, {measured} level"


def _needed_nonmembers(fpr: float) -> tuple[int, int]:
    """Non-members for TPR at ``fpr`` to be measurable at all (one false positive allowed), and
    for a usable CI (about ten)."""
    return math.ceil(round(1 / fpr, 9)), math.ceil(round(10 / fpr, 9))


@dataclass(frozen=True)
class MembershipTPR(_Check):
    """Membership TPR at a stated FPR (0.001 or 0.01, as audits record them); upper CI end ≤ max."""

    max: float
    fpr: float = 0.01
    level: str = "user"
    type: ClassVar[str] = "membership_tpr"
    limits: ClassVar[dict] = {"max": (0, 1), "fpr": (0, 1, "()")}
    choices: ClassVar[dict] = {"level": ("user", "example", "canary")}
    keys: ClassVar[dict] = {0.001: "tpr_at_0.1pct_fpr", 0.01: "tpr_at_1pct_fpr"}

    @property
    def row_label(self) -> str:
        return f"membership TPR @ {self.fpr:g} FPR ({self.level})"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max:g} (CI upper end)"

    def measure(self, record: Record) -> Measurement:
        prefix, source = _membership_source(record, self.level)
        if prefix is None:
            return _not_measured(source)
        if not any(math.isclose(self.fpr, f) for f in self.keys):
            return _not_measured(f"{NOT_MEASURED}: audits record TPR at FPR 0.001 and 0.01 only", source)
        fpr = next(f for f in self.keys if math.isclose(self.fpr, f))
        if prefix[-1] == "membership":  # {"0.001": …, "0.01": …}
            key, ci_key = ("tpr_at_fpr", str(fpr)), ("tpr_at_fpr_ci", str(fpr))
        else:
            key, ci_key = (self.keys[fpr],), (f"{self.keys[fpr]}_ci",)
        value, ci = record.number(prefix + key), record.interval(prefix + ci_key)
        n_nonmembers = record.number((*prefix, "n_nonmembers"))
        summary = f"TPR {value:.3f} {_ci(ci)}"
        if fpr * n_nonmembers < 1:  # no false positive allowed: sandbox.audit.metrics reads it at FPR 0
            at_all, usable = _needed_nonmembers(fpr)
            reason = (
                f"TPR at FPR {fpr:g} is not measurable with {n_nonmembers:g} non-members (under 1/{fpr:g}, "
                f"so it is read at zero false positives, which bounds no TPR at FPR {fpr:g}): it needs "
                f"≥ {at_all} non-members to be measurable at all, about {usable} for a usable CI"
            )
            return Measurement(
                value,
                ci,
                INCONCLUSIVE,
                reason,
                source,
                judged=False,
                summary=f"{summary} with {n_nonmembers:g} non-members (needs ≥ {at_all})",
            )
        verdict, reason = _ci_verdict(value, ci, self.max)
        return Measurement(value, ci, verdict, reason, source, judged=True, summary=summary)


@dataclass(frozen=True)
class MembershipAUC(_Check):
    """Membership AUC (0.5 = chance); upper CI end ≤ max."""

    max: float
    level: str = "user"
    type: ClassVar[str] = "membership_auc"
    limits: ClassVar[dict] = {"max": (0, 1)}
    choices: ClassVar[dict] = {"level": ("user", "example", "canary")}

    @property
    def row_label(self) -> str:
        return f"membership AUC ({self.level})"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max:g} (CI upper end)"

    def measure(self, record: Record) -> Measurement:
        prefix, source = _membership_source(record, self.level)
        if prefix is None:
            return _not_measured(source)
        value, ci = record.number((*prefix, "auc")), record.interval((*prefix, "auc_ci"))
        return Measurement(
            value, ci, *_ci_verdict(value, ci, self.max), source, judged=True, summary=f"AUC {value:.3f} {_ci(ci)}"
        )


@dataclass(frozen=True)
class CanaryExposure(_Check):
    """Exposure in bits (mean or max over canaries whose host trained) ≤ max; the record has no CI."""

    max: float
    method: str = "rank"
    statistic: str = "mean"
    min_canaries: int = 1
    type: ClassVar[str] = "canary_exposure"
    limits: ClassVar[dict] = {"max": (0, math.inf), "min_canaries": (1, math.inf)}
    choices: ClassVar[dict] = {"method": ("rank", "fit"), "statistic": ("mean", "max")}

    @property
    def row_label(self) -> str:
        return f"canary exposure, {self.statistic} by {self.method} (bits)"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max:g}"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit") or record.get("audit.attack") != "canary":
            return _not_measured(f"{NOT_MEASURED} (no audit=canary)")
        stats = ("audit", "canaries", f"exposure_by_{self.method}", "trained_hosts")
        n = int(record.number((*stats, "n")))
        value = record.number((*stats, self.statistic)) if record.has((*stats, self.statistic)) else None
        source = f"audit canary, {n} canaries whose host trained"
        if not n or value is None:
            return _not_measured("no planted canary's host trained", source)
        ceiling = record.number("audit.canaries.max_exposure_possible_by_rank")
        summary = f"{value:.2f} bits ({n} canaries)"
        if n < self.min_canaries:  # no CI is recorded: the count is what guards against noise
            verdict, reason = (
                INCONCLUSIVE,
                (f"{value:.2f} bits from {n} canaries whose host trained; the check needs ≥ {self.min_canaries}"),
            )
        elif value > self.max:
            verdict, reason = FAIL, f"{value:.2f} bits > {self.max:g}"
        elif self.method == "rank" and ceiling <= self.max:
            verdict, reason = (
                INCONCLUSIVE,
                (
                    f"by rank this run cannot measure above {ceiling:.2f} bits (log2 of "
                    f"fresh canaries + 1) ≤ {self.max:g}: add data.n_fresh_canaries"
                ),
            )
        else:
            verdict, reason = PASS, f"{value:.2f} bits ≤ {self.max:g} (point value: no CI recorded)"
        return Measurement(value, None, verdict, reason, source, judged=verdict != INCONCLUSIVE, summary=summary)


@dataclass(frozen=True)
class Extraction(_Check):
    """At most ``max_extracted`` of ≥ ``min_canaries`` canaries reproduced by the model."""

    max_extracted: int = 0
    min_canaries: int = 1
    type: ClassVar[str] = "extraction"
    limits: ClassVar[dict] = {"max_extracted": (0, math.inf), "min_canaries": (1, math.inf)}
    choices: ClassVar[dict] = {}

    @property
    def row_label(self) -> str:
        return "canaries extracted"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max_extracted} of ≥ {self.min_canaries}"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit.extraction"):
            return _not_measured(NOT_MEASURED)
        n, k = record.number("audit.extraction.n_canaries"), record.number("audit.extraction.n_extracted")
        source = f"audit {record.get('audit.attack')}, {n:g} canaries tried"
        if k > self.max_extracted:
            verdict, reason = FAIL, f"{k:g} of {n:g} canaries extracted"
        elif n < self.min_canaries:
            verdict, reason = INCONCLUSIVE, f"only {n:g} canaries tried, the check needs ≥ {self.min_canaries}"
        else:
            verdict, reason = PASS, f"{k:g} of {n:g} canaries extracted"
        return Measurement(
            k, None, verdict, reason, source, judged=verdict != INCONCLUSIVE, summary=f"{k:g} of {n:g} extracted"
        )


@dataclass(frozen=True)
class AttributeAdvantage(_Check):
    """Attribute-inference advantage (TPR − FPR): the members − non-members ``gap`` or the ``members``'."""

    max: float
    field: str = "gap"
    type: ClassVar[str] = "attribute_advantage"
    limits: ClassVar[dict] = {"max": (-1, 1)}
    choices: ClassVar[dict] = {"field": ("gap", "members")}

    @property
    def row_label(self) -> str:
        return f"attribute advantage, {self.field}"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max:g} (CI upper end)"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit.attribute"):
            return _not_measured(f"{NOT_MEASURED} (no attribute audit)")
        name = record.get("audit.attribute.name") if record.has("audit.attribute.name") else "?"
        source, result = f"audit {record.get('audit.attack')}, attribute {name!r}", record.get("audit.attribute.result")
        if result != "measured":
            why = record.get("audit.attribute.reason") if record.has("audit.attribute.reason") else ""
            return _not_measured(f"{NOT_MEASURED}: attribute audit {result}: {why}", source)
        key = "audit.attribute.gap" if self.field == "gap" else "audit.attribute.members.advantage"
        value, ci = record.number(key), record.interval(key + "_ci")
        return Measurement(
            value,
            ci,
            *_ci_verdict(value, ci, self.max),
            source,
            judged=True,
            summary=f"{self.field} {value:.3f} {_ci(ci)}",
        )


@dataclass(frozen=True)
class Epsilon:
    """The accountant's ε ≤ max for the stated unit (equal) and δ (record δ ≤ stated δ), from noise
    no one holding the record can regenerate."""

    max: float
    delta: float
    unit: str = "user"
    type: ClassVar[str] = "epsilon"
    limits: ClassVar[dict] = {"max": (0, math.inf, "()"), "delta": (0, 1, "()")}
    choices: ClassVar[dict] = {"unit": ("example", "user", "workspace")}
    discriminating: ClassVar[bool] = False  # a guarantee of the mechanism: no control to compare with

    def judge(self, record: Record, *, gate: bool = True) -> Evidence:
        label, bound = f"ε ({self.unit} level)", f"≤ {self.max:g} at δ ≤ {self.delta:g}"
        eps, unit, delta = (record.get(f"privacy.{k}") for k in ("epsilon", "unit", "delta"))
        accountant = record.get("privacy.accountant")
        privacy = record.get("privacy")
        source = f"privacy: {record.get('privacy.mechanism')}, {accountant or 'no'} accountant"
        value = None if eps is None else record.number("privacy.epsilon")
        if gate and record.has("audit") and record.get("audit.result") == "dp_bug":
            verdict, reason = FAIL, "the audit measured ε above the accountant's (dp_bug): the accounting is wrong"
        elif value is None:
            verdict, reason = FAIL, "not private: the run has no ε"
        elif "noise_source" not in privacy:
            verdict, reason = FAIL, NO_NOISE_SOURCE
        elif privacy["noise_source"] == "seeded":
            verdict, reason = FAIL, SEEDED_NOISE
        elif privacy["noise_source"] != "secure":
            verdict, reason = FAIL, f"noise source {privacy['noise_source']!r} is not 'secure'"
        elif math.isinf(value):
            verdict, reason = FAIL, "ε = inf: no finite guarantee"
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


@dataclass(frozen=True)
class CanaryClientEpsilon(_Check):
    """The canary-client ε estimate of a federated run (``audit=canary_clients``, Andrew et al. 2024)
    ≤ max, judged on its bootstrap CI like every CI check. Federated runs only: on a central run
    the row is N/A (there are no clients to insert)."""

    max: float
    type: ClassVar[str] = "canary_client_epsilon"
    limits: ClassVar[dict] = {"max": (0, math.inf, "()")}
    choices: ClassVar[dict] = {}
    applies_to: ClassVar[str] = "federated"

    @property
    def row_label(self) -> str:
        return "canary-client ε estimate (federated pipeline)"

    @property
    def row_bound(self) -> str:
        return f"≤ {self.max:g}"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit") or record.get("audit.attack") != "canary_clients":
            return _not_measured(f"{NOT_MEASURED} (no audit=canary_clients)")
        # null: the canaries' cosines have no spread (read exactly): an infinite estimate
        raw, raw_ci = record.get("audit.epsilon_estimate"), record.get("audit.epsilon_estimate_ci")
        value = math.inf if raw is None else record.number("audit.epsilon_estimate")
        unbounded = isinstance(raw_ci, list) and len(raw_ci) == 2 and raw_ci[1] is None  # upper end ∞
        if unbounded:
            raw_ci = [raw_ci[0], 0.0]  # checked as an interval, the upper end then read as ∞
        ci = Record({"audit": {"epsilon_estimate_ci": raw_ci}}, record.origin).interval("audit.epsilon_estimate_ci")
        ci = (ci[0], math.inf) if unbounded else ci
        n = record.number("audit.n_canaries")
        source = f"audit canary_clients, {n:g} canary clients against as many never-inserted directions"
        verdict, reason = _ci_verdict(value, ci, self.max)
        return Measurement(value, ci, verdict, reason, source, judged=True, summary=f"ε̂ {value:.3f} {_ci(ci)}")


@dataclass(frozen=True)
class ServerIndividualUpdates(_Check):
    """Share of the clients that took part whose update the server received individually ≤ ``max_share``
    (``audit=server_view``): "the server only sees aggregates". Federated runs only."""

    max_share: float = 0.0
    type: ClassVar[str] = "server_individual_updates"
    limits: ClassVar[dict] = {"max_share": (0, 1)}
    choices: ClassVar[dict] = {}
    applies_to: ClassVar[str] = "federated"

    @property
    def row_label(self) -> str:
        return "clients whose update the server saw individually"

    @property
    def row_bound(self) -> str:
        return f"share ≤ {self.max_share:g}"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit") or record.get("audit.attack") != "server_view":
            return _not_measured(f"{NOT_MEASURED} (no audit=server_view)")
        count = record.number("audit.clients_seen_individually.count")
        took_part = record.number("audit.clients_took_part")
        source = f"audit server_view, {took_part:g} clients took part"
        if not took_part:
            return _not_measured("no client took part", source)
        share = count / took_part
        summary = f"{count:g} of {took_part:g} ({share:.0%})"
        verdict = FAIL if share > self.max_share else PASS
        reason = f"the server received {count:g} of {took_part:g} clients' updates one by one ({share:.1%})"
        return Measurement(share, None, verdict, reason, source, judged=True, summary=summary)


@dataclass(frozen=True)
class ServerRecovery(_Check):
    """Mean per-client recall of their distinct words from what the server received (``audit=server_view``)
    ≤ max, on its bootstrap CI. ``view: individual``: from the updates seen one by one (none seen: 0);
    ``aggregate_intersection``: intersecting the secure aggregates of the rounds each client took part in."""

    max: float
    view: str = "individual"
    type: ClassVar[str] = "server_recovery"
    limits: ClassVar[dict] = {"max": (0, 1)}
    choices: ClassVar[dict] = {"view": ("individual", "aggregate_intersection")}
    applies_to: ClassVar[str] = "federated"

    @property
    def row_label(self) -> str:
        how = "individual updates" if self.view == "individual" else "intersected aggregates"
        return f"a client's words recovered by the server ({how})"

    @property
    def row_bound(self) -> str:
        return f"mean recall ≤ {self.max:g}"

    def measure(self, record: Record) -> Measurement:
        if not record.has("audit") or record.get("audit.attack") != "server_view":
            return _not_measured(f"{NOT_MEASURED} (no audit=server_view)")
        section = ("audit", self.view)
        source = f"audit server_view, {self.view}"
        if record.get((*section, "result")) != "measured":
            if self.view == "individual" and record.number("audit.clients_seen_individually.count") == 0:
                reason = "the server received no individual update: nothing to recover from"
                return Measurement(0.0, None, PASS, reason, source, judged=True, summary="recall 0 (none seen)")
            return _not_measured(f"{NOT_MEASURED}: {record.get((*section, 'reason'))}", source)
        value = record.number((*section, "recall", "mean"))
        ci = record.interval((*section, "recall", "ci"))
        verdict, reason = _ci_verdict(value, ci, self.max)
        return Measurement(value, ci, verdict, reason, source, judged=True, summary=f"recall {value:.3f} {_ci(ci)}")


CHECKS = {
    c.type: c
    for c in (
        MembershipTPR,
        MembershipAUC,
        CanaryExposure,
        Extraction,
        AttributeAdvantage,
        CanaryClientEpsilon,
        ServerIndividualUpdates,
        ServerRecovery,
        Epsilon,
    )
}


# --- the control view and the row ---------------------------------------------------------------


@dataclass(frozen=True)
class ControlView:
    """The record as its positive control saw it: ``record`` has the control's audit in place of
    the run's (None when there is none to judge, ``why`` says so); ``pipeline`` as recorded."""

    record: Record | None
    why: str
    pipeline: str


def control_view(record: Record) -> ControlView:
    """The record with ``audit`` replaced by ``audit.control.audit`` (the non-private model of the
    same pipeline, attacked the same way), or the record itself when the run is not private and
    its own audit is the control; else no view, and why."""
    if not record.has("audit"):
        return ControlView(None, "no audit section", "")
    if not record.has("audit.control"):
        return ControlView(None, "this audit records no positive control", "")
    control = record.get("audit.control")
    if not isinstance(control, Mapping):
        raise ClaimError(f"{record.origin}: audit.control: expected a mapping, got {control!r}")
    pipeline = str(control.get("pipeline") or "pipeline not recorded")
    if control.get("audit") is not None:
        audit = control["audit"]
        if not isinstance(audit, Mapping):
            raise ClaimError(f"{record.origin}: audit.control.audit: expected a mapping, got {audit!r}")
        return ControlView(
            Record(
                {**record.data, "audit": audit},
                f"{record.origin} (control view: audit = audit.control.audit)",
                record.path,
            ),
            "",
            pipeline,
        )
    ran_on = control.get("ran_on")
    if isinstance(ran_on, str) and ran_on.startswith("this run"):  # not private / its individual updates seen
        return ControlView(record, "", pipeline)
    if ran_on == "none":
        why = control.get("reason") or "positive control disabled"
        return ControlView(None, f"the positive control did not run ({why})", pipeline)
    return ControlView(
        None,
        "the record keeps only the control's pass/fail (TPR at 1% FPR), not its audit "
        "(written before per-statistic controls): re-run the audit",
        pipeline,
    )


def judge_row(check, record: Record, *, require_control: bool = True) -> Evidence:
    """One check's row on one record: the check (with the audit gate), then, for every non-ε check,
    the same check on the control view (no audit gate), then the run's status. A check for
    federated pipelines (``applies_to = "federated"``) on a central run is N/A."""
    if getattr(check, "applies_to", "all") == "federated" and record.has("mode") and record.get("mode") != "federated":
        return Evidence(
            check.row_label,
            None,
            None,
            check.row_bound,
            NOT_APPLICABLE,
            f"applies to federated pipelines only; this run is {record.get('mode')}",
            "",
        )
    row = check.judge(record)
    if check.discriminating:
        row = _with_control(check, record, row, require_control)
    if record.has("status") and record.get("status") == "failed":
        why = (
            f"the audit found a probable DP bug ({record.get('audit.reason')})"
            if record.has("audit.reason")
            else "the audit found a probable DP bug"
        )
        if not (row.verdict == FAIL and "dp_bug" in row.reason):
            row = replace(
                row, verdict=FAIL, reason=f"run status failed: {why}; this row alone: {row.verdict}, {row.reason}"
            )
    return row


def _with_control(check: _Check, record: Record, row: Evidence, require_control: bool) -> Evidence:
    view = control_view(record)
    discriminates, missing, control_verdict = None, "", None
    if view.record is None:
        control, missing = "none", view.why
    else:
        c = check.measure(view.record)
        control = f"{c.summary}: {c.verdict}" if c.summary else "not measured"
        if c.judged:
            discriminates, control_verdict = c.verdict == FAIL, c.verdict
        else:
            missing = f"the control: {c.reason}"
    where = f"control: {control}; {view.pipeline}" if view.pipeline else f"control: {control}"
    verdict, reason = row.verdict, row.reason
    if row.verdict == PASS:
        if discriminates is True:
            reason = f"{row.reason}; discriminates: the control ({view.pipeline or 'no DP'}) fails it"
        elif discriminates is False:
            also = "also passes" if control_verdict == PASS else "does not fail it either"
            verdict, reason = (
                INCONCLUSIVE,
                (
                    f"{NOT_DISCRIMINATING}: a non-private model of the same pipeline {also} "
                    f"({where}); this run: {row.reason}"
                ),
            )
        elif require_control:
            verdict, reason = INCONCLUSIVE, f"{NO_CONTROL}: {missing}; this run: {row.reason}"
        else:
            reason = f"{row.reason} (no discriminating control: require_control: false; {NO_CONTROL}: {missing})"
    return replace(row, verdict=verdict, reason=reason, control=control, discriminates=discriminates)
