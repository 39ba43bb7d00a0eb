"""What the frontier reads off one ``record.json``: privacy, the task's utility metric and its
baseline, and the audit's attack success. Pure functions of the record (``sandbox.record.RunRecord``,
or its JSON data).

Utility metric per task: the emoji task's top-K accuracy on held-out users (K = ``task.top_k``,
top5), next to the most-frequent-emoji baseline; recommenders (``metrics.ranking`` present:
jobs, channels) recall@K on the held-out items of held-out users (K = 10), next to popularity.
Attack success: membership AUC and TPR at 1% FPR (``audit`` of ``sandbox/audit/harness.py``, or
``audit.membership`` of ``sandbox/audit/recsys.py``), plus the empirical ε lower bound when the
audit computes one (the larger of the threshold and one-run bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sandbox.record import RunRecord


class RecordError(ValueError):
    """A record the frontier cannot use; the message is the reason shown for the skipped run."""


@dataclass(frozen=True)
class Attack:
    """An audit's result as the frontier uses it."""

    name: str  # e.g. "loss (user level, scores)", "suggestions (user level, top-10 list shown to the user)"
    result: str  # measured | inconclusive (control failed) | …
    auc: float
    tpr_at_1pct_fpr: float
    eps_lower_bound: float | None  # None: this attack computes none (suggestions audit)
    attribute_advantage: float | None = None  # recommenders with a sensitive attribute: members' advantage
    attribute_gap: float | None = None  # members − non-members


@dataclass(frozen=True)
class Point:
    """One completed run: privacy, utility, attack (None when not audited)."""

    task: str
    mode: str
    mechanism: str
    status: str
    epsilon: float  # math.inf when not private
    unit: str | None
    delta: float | None
    accountant: str | None
    utility_metric: str  # "top5" | "recall@10"
    utility: float
    baseline: float
    baseline_name: str  # "most-frequent" | "popularity"
    attack: Attack | None

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)


def utility_label(metric: str) -> str:
    """Axis label of a utility metric, saying what it is measured on."""
    if metric.startswith("recall@"):
        return f"{metric} (held-out users' held-out items)"
    return f"top-{metric[3:]} accuracy (held-out users)" if metric.startswith("top") else metric


def point_from_record(record: RunRecord | dict) -> Point:
    """The frontier's view of a record; ``RecordError`` (the reason to skip it) if unusable."""
    if isinstance(record, RunRecord):
        record = record.to_json()
    if not isinstance(record, dict):
        raise RecordError("record.json is not a JSON object")
    status = record.get("status", "completed")
    if status == "failed":
        audit = record.get("audit") or {}
        raise RecordError(
            f"status failed (audit result {audit.get('result', '?')}: {audit.get('reason', 'no reason')})"
        )
    try:
        p = record["privacy"]
        metric, utility, baseline, baseline_name = _utility(record["metrics"])
        eps = math.inf if p["epsilon"] is None else float(p["epsilon"])
        point = Point(
            task=str(record["task"]),
            mode=str(record["mode"]),
            mechanism=str(p["mechanism"]),
            status=str(status),
            epsilon=eps,
            unit=p.get("unit"),
            delta=p.get("delta"),
            accountant=p.get("accountant"),
            utility_metric=metric,
            utility=float(utility),
            baseline=float(baseline),
            baseline_name=baseline_name,
            attack=_attack(record.get("audit")),
        )
    except KeyError as exc:
        raise RecordError(f"record.json has no key {exc} where expected") from None
    except StopIteration:
        raise RecordError("record.json has no top-K or recall@K metric") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"record.json has an unexpected value: {exc}") from None
    if math.isnan(point.epsilon) or point.epsilon < 0 or not math.isfinite(point.utility):
        raise RecordError(
            f"record.json has a non-finite or negative value (ε {point.epsilon}, {metric} {point.utility})"
        )
    return point


def _utility(metrics: dict) -> tuple[str, float, float, str]:
    if "ranking" in metrics:
        held, popular = metrics["ranking"]["held_out_users"], metrics["ranking"]["held_out_users_popularity"]
        key = next(k for k in held if k.startswith("recall@"))
        return key, held[key], popular[key], "popularity"
    key = next((k for k in metrics if k.startswith("top") and k != "top1"), "top1")
    return key, metrics[key], metrics["baseline"][key], "most-frequent"


def _attack(audit: dict | None) -> Attack | None:
    if not audit:
        return None
    if audit["attack"] == "suggestions":
        membership, attribute = audit["membership"], audit.get("attribute") or {}
        measured = attribute.get("result") == "measured"
        return Attack(
            name=f"suggestions ({audit['level']} level, {audit['threat']})",
            result=str(audit.get("result", "measured")),
            auc=float(membership["auc"]),
            tpr_at_1pct_fpr=float(membership["tpr_at_fpr"]["0.01"]),
            eps_lower_bound=None,
            attribute_advantage=float(attribute["members"]["advantage"]) if measured else None,
            attribute_gap=float(attribute["gap"]) if measured else None,
        )
    bounds = [b for b in (audit.get("eps_lower_bound"), audit.get("one_run_eps_lower_bound")) if b is not None]
    return Attack(
        name=f"{audit['attack']} ({audit['level']} level, {audit['threat']})",
        result=str(audit["result"]),
        auc=float(audit["auc"]),
        tpr_at_1pct_fpr=float(audit["tpr_at_1pct_fpr"]),
        eps_lower_bound=float(max(bounds)) if bounds else None,
    )
