"""A sweep's frontier: every run read, ranked within its task, flagged Pareto-optimal or not,
rendered as a Markdown table and CSV. Reading is here; writing files is the CLI's.

Rows are sorted by task, then ε (non-private last), then run. ``#`` numbers the rows; the plots
label their points with the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from sandbox.compare.pareto import Objectives, ParetoResult, pareto_front
from sandbox.compare.points import Point, RecordError, point_from_record, utility_label
from sandbox.compare.sweep import Job, find_jobs
from sandbox.record import RecordError as TypedRecordError
from sandbox.record import load as load_record

ATTACK_METRICS = {"auc": "membership AUC", "tpr": "TPR at 1% FPR"}


class CompareError(Exception):
    """Input the comparison cannot use at all (no directory, no completed run); names the path."""


@dataclass(frozen=True)
class Row:
    index: int  # 1-based, as in the table and on the plots
    label: str
    run_dir: str
    point: Point
    pareto: ParetoResult  # dominated_by is a row index (1-based)


@dataclass(frozen=True)
class Skipped:
    label: str
    run_dir: str
    reason: str


@dataclass(frozen=True)
class Frontier:
    root: Path
    rows: tuple[Row, ...]
    skipped: tuple[Skipped, ...]
    common_overrides: dict[str, tuple[str, ...]]  # per sweep directory ("": the root), see sweep.Layout
    notes: tuple[str, ...]
    attack_metric: str  # a key of ATTACK_METRICS: the attack success the Pareto flag uses

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(r.point.task for r in self.rows))


def attack_value(point: Point, metric: str) -> float | None:
    """The attack success the Pareto flag uses (None: the run has no audit)."""
    if point.attack is None:
        return None
    return point.attack.auc if metric == "auc" else point.attack.tpr_at_1pct_fpr


def read_frontier(root: Path, *, attack_metric: str = "auc") -> Frontier:
    """Read every run under ``root``; ``CompareError`` if there is no directory or no usable record."""
    if attack_metric not in ATTACK_METRICS:
        raise CompareError(f"attack metric must be one of {sorted(ATTACK_METRICS)}, got {attack_metric!r}")
    if not root.is_dir():
        raise CompareError(f"{root}: {'not a directory' if root.exists() else 'no such directory'}")
    root = root.resolve()
    layout = find_jobs(root)
    if not layout.jobs:
        raise CompareError(f"{root}: no runs under it (no record.json, no Hydra job directory)")
    found, skipped = [], []
    for job in layout.jobs:
        run_dir = job.path.relative_to(root).as_posix() if job.path is not None else ""
        try:
            found.append((job.label, run_dir, _read_point(job)))
        except RecordError as exc:
            skipped.append(Skipped(label=job.label, run_dir=run_dir, reason=str(exc)))
    if not found:
        reasons = "; ".join(f"{s.label}: {s.reason}" for s in skipped)
        raise CompareError(f"{root}: no completed run record ({len(skipped)} run(s) skipped: {reasons})")
    rows = _rank(found, attack_metric)
    return Frontier(
        root=root,
        rows=rows,
        skipped=tuple(skipped),
        common_overrides=layout.common_overrides,
        notes=layout.notes + _notes(rows),
        attack_metric=attack_metric,
    )


def _read_point(job: Job) -> Point:
    if job.path is None:
        raise RecordError("never started: no job directory (the sweep stopped before this job, or is still running)")
    path = job.path / "record.json"
    if not path.is_file():
        raise RecordError(
            "no record.json: the run stopped before finishing (an error; see its log) or is still running"
        )
    try:
        record = load_record(path, partial=True)  # typed: a value of the wrong type names its key
    except TypedRecordError as exc:
        raise RecordError(f"record.json unreadable: {exc}") from None
    return point_from_record(record)


def _rank(found: list[tuple[str, str, Point]], attack_metric: str) -> tuple[Row, ...]:
    ordered = sorted(found, key=lambda f: (f[2].task, f[2].epsilon, f[0]))
    pareto: list[ParetoResult | None] = [None] * len(ordered)
    for task in dict.fromkeys(p.task for _, _, p in ordered):
        idx = [i for i, (_, _, p) in enumerate(ordered) if p.task == task]
        objectives = [
            Objectives(
                epsilon=ordered[i][2].epsilon,
                utility=ordered[i][2].utility,
                attack=attack_value(ordered[i][2], attack_metric),
            )
            for i in idx
        ]
        for i, result in zip(idx, pareto_front(objectives)):
            by = None if result.dominated_by is None else idx[result.dominated_by] + 1
            pareto[i] = ParetoResult(optimal=result.optimal, dominated_by=by, with_attack=result.with_attack)
    return tuple(
        Row(index=i + 1, label=label, run_dir=run_dir, point=p, pareto=pareto[i])
        for i, (label, run_dir, p) in enumerate(ordered)
    )


def _notes(rows: tuple[Row, ...]) -> tuple[str, ...]:
    """What a reader must know before comparing the rows: mixed units or attacks, weak audits."""
    notes = []
    ids = lambda rs: ", ".join(f"#{r.index}" for r in rs)  # noqa: E731
    for task in dict.fromkeys(r.point.task for r in rows):
        of_task = [r for r in rows if r.point.task == task]
        units = sorted({str(r.point.unit) for r in of_task if r.point.private})
        if len(units) > 1:
            notes.append(
                f"{task}: ε of different units ({', '.join(units)}) share one axis and one Pareto "
                "comparison; an example-level ε says nothing about a whole user"
            )
        attacks = sorted({r.point.attack.name for r in of_task if r.point.attack})
        if len(attacks) > 1:
            notes.append(f"{task}: different attacks ({'; '.join(attacks)}) are compared as one attack success")
        unaudited = [r for r in of_task if r.point.attack is None]
        if unaudited and len(unaudited) < len(of_task):
            notes.append(f"{task}: {ids(unaudited)} have no audit: compared with the others on ε and utility only")
        elif unaudited:
            notes.append(f"{task}: no run has an audit: Pareto on ε and utility only")
    weak = [r for r in rows if r.point.attack and r.point.attack.result == "inconclusive"]
    if weak:
        notes.append(
            f"{ids(weak)}: audit inconclusive (the positive control failed): a low attack success "
            "there is not evidence of privacy"
        )
    stopped = [r for r in rows if r.point.status != "completed"]
    if stopped:
        notes.append(
            f"{ids(stopped)}: status {', '.join(sorted({r.point.status for r in stopped}))} "
            "(e.g. stopped before the round that would exceed the target ε)"
        )
    return tuple(notes)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def epsilon_text(p: Point) -> str:
    if not p.private:
        return "not private"
    delta = "?" if p.delta is None else f"{p.delta:.0e}"
    return f"{p.epsilon:.2f} ({p.unit}, δ = {delta})"


def pareto_text(row: Row) -> str:
    basis = "" if row.pareto.with_attack else " (ε, utility only: no audit)"
    return f"**yes**{basis}" if row.pareto.optimal else f"no: #{row.pareto.dominated_by} dominates{basis}"


HEADER = [
    "#",
    "run",
    "task",
    "mode",
    "mechanism",
    "ε (unit, δ)",
    "utility",
    "baseline",
    "attack (result)",
    "membership AUC",
    "TPR@1%FPR",
    "many-targets ε (heuristic)",
    "Pareto",
]


def table_rows(frontier: Frontier) -> list[list[str]]:
    """The Markdown table's cells, one list per run."""
    out = []
    for r in frontier.rows:
        p, a = r.point, r.point.attack
        label = r.label + ("" if p.status == "completed" else f" ({p.status})")
        out.append(
            [
                str(r.index),
                label,
                p.task,
                p.mode,
                p.mechanism,
                epsilon_text(p),
                f"{p.utility_metric} {p.utility:.3f}",
                f"{p.baseline_name} {p.baseline:.3f}",
                f"{a.name}: {a.result}" if a else "no audit",
                _num(a and a.auc),
                _num(a and a.tpr_at_1pct_fpr),
                _num(a and a.eps_lower_bound),
                pareto_text(r),
            ]
        )
    return out


def markdown_table(frontier: Frontier) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table_rows(frontier)]
    return "\n".join(lines)


def skipped_text(frontier: Frontier) -> str:
    return "\n".join(f"- {s.label} (`{s.run_dir or 'no directory'}`): {s.reason}" for s in frontier.skipped)


def to_markdown(frontier: Frontier, *, plots: dict[str, str]) -> str:
    """frontier.md: what was compared and how, the table, notes, skipped runs and the plots."""
    utilities = "; ".join(
        f"{task}: {metric} = {utility_label(metric)}, beside the {base} baseline"
        for task, metric, base in dict.fromkeys(
            (r.point.task, r.point.utility_metric, r.point.baseline_name) for r in frontier.rows
        )
    )
    parts = [
        "# Frontier: privacy (ε) against utility and attack success",
        f"Runs under `{frontier.root}`: {len(frontier.rows)} compared, {len(frontier.skipped)} skipped.",
        *_overrides_text(frontier.common_overrides),
        f"Utility per task: {utilities}.",
        f"Attack success for the Pareto flag: {ATTACK_METRICS[frontier.attack_metric]} (lower is better). "
        "Shown as recorded: membership AUC (0.5 = chance), TPR at 1% FPR (0.01 = chance) and the audit's "
        "many-targets ε figure (a heuristic that treats the targets of one model as independent trials, "
        "not a 95% bound; — when the attack computes none).",
        "Pareto, within each task: a run is optimal when no other run of the task has ε ≤ its ε, utility ≥ "
        "its utility and — when both runs were audited — attack success ≤ its attack success, with at least "
        "one of these strict. Non-private runs have ε = ∞. Runs without an audit are compared on ε and utility "
        "only. Point estimates; confidence intervals are not taken into account.",
        markdown_table(frontier),
    ]
    if frontier.notes:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in frontier.notes))
    if frontier.skipped:
        parts.append("## Skipped runs\n\n" + skipped_text(frontier))
    parts += [f"![{title}]({name})" for title, name in plots.items()]
    return "\n\n".join(parts) + "\n"


def _overrides_text(common: dict[str, tuple[str, ...]]) -> list[str]:
    if list(common) == [""]:
        return [f"Overrides shared by every run: `{' '.join(common[''])}`"] if common[""] else []
    return [
        "Overrides shared by every run of a sweep:\n\n"
        + "\n".join(f"- `{group or '.'}/`: `{' '.join(shared)}`" for group, shared in common.items() if shared)
    ]


CSV_FIELDS = [
    "index",
    "run",
    "run_dir",
    "task",
    "mode",
    "mechanism",
    "status",
    "private",
    "epsilon",
    "unit",
    "delta",
    "accountant",
    "utility_metric",
    "utility",
    "baseline_name",
    "baseline",
    "attack",
    "audit_result",
    "membership_auc",
    "tpr_at_1pct_fpr",
    "eps_lower_bound",
    "attribute_advantage",
    "attribute_gap",
    "pareto",
    "pareto_basis",
    "dominated_by",
]


def to_csv(frontier: Frontier) -> str:
    """frontier.csv: one row per compared run; ε is ``inf`` when not private; empty = not applicable."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in frontier.rows:
        p, a = r.point, r.point.attack
        writer.writerow(
            {
                "index": r.index,
                "run": r.label,
                "run_dir": r.run_dir,
                "task": p.task,
                "mode": p.mode,
                "mechanism": p.mechanism,
                "status": p.status,
                "private": p.private,
                "epsilon": "inf" if math.isinf(p.epsilon) else p.epsilon,
                "unit": p.unit,
                "delta": p.delta,
                "accountant": p.accountant,
                "utility_metric": p.utility_metric,
                "utility": p.utility,
                "baseline_name": p.baseline_name,
                "baseline": p.baseline,
                "attack": a.name if a else None,
                "audit_result": a.result if a else None,
                "membership_auc": a.auc if a else None,
                "tpr_at_1pct_fpr": a.tpr_at_1pct_fpr if a else None,
                "eps_lower_bound": a.eps_lower_bound if a else None,
                "attribute_advantage": a.attribute_advantage if a else None,
                "attribute_gap": a.attribute_gap if a else None,
                "pareto": r.pareto.optimal,
                "pareto_basis": (
                    f"epsilon, utility, {frontier.attack_metric}"
                    if r.pareto.with_attack
                    else "epsilon, utility (no audit)"
                ),
                "dominated_by": r.pareto.dominated_by,
            }
        )
    return buf.getvalue()
