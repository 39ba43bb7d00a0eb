"""Frontier plots (matplotlib, Agg, no pyplot state): ε against utility, ε against attack success.

One column of panels per task (each task has its own utility metric, named in the axis label).
ε is on a log axis; non-private runs (ε = ∞) are drawn at the right edge, past a dotted line,
at a tick labelled "∞ (not private)", with a ">" marker; a run that spent ε = 0 (stopped before
its first round) is drawn at the left edge at a tick "0". Pareto-optimal runs are ringed.
Points carry their row number (#) from frontier.md.
"""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from sandbox.compare.frontier import ATTACK_METRICS, Frontier, Row
from sandbox.compare.points import utility_label

NOT_PRIVATE = "∞ (not private)"
CHANCE = {"membership AUC": 0.5, "TPR at 1% FPR": 0.01}


def utility_png(frontier: Frontier) -> bytes:
    return _png(utility_figure(frontier))


def attack_png(frontier: Frontier) -> bytes:
    return _png(attack_figure(frontier))


def utility_figure(frontier: Frontier) -> Figure:
    """ε vs the task's utility metric, one panel per task, with the task's baseline as a dashed line."""
    tasks = frontier.tasks
    fig, axes = _figure(1, len(tasks))
    for col, task in enumerate(tasks):
        ax, rows = axes[0][col], [r for r in frontier.rows if r.point.task == task]
        audited = any(r.point.attack is not None for r in rows)
        _scatter(
            ax,
            rows,
            lambda r: r.point.utility,
            pareto_by=f"ε, utility, {ATTACK_METRICS[frontier.attack_metric]}" if audited else "ε, utility",
        )
        for base, name in dict.fromkeys((r.point.baseline, r.point.baseline_name) for r in rows):
            ax.axhline(base, color="grey", ls="--", lw=1, label=f"{name} baseline {base:.3f}")
        ax.set(title=task, ylabel=utility_label(rows[0].point.utility_metric))
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("privacy vs utility (higher is better)")
    return fig


def attack_figure(frontier: Frontier) -> Figure:
    """ε vs membership AUC (top row) and TPR at 1% FPR (bottom row), one column per task, with chance."""
    tasks = frontier.tasks
    fig, axes = _figure(2, len(tasks))
    metrics = [
        ("membership AUC", lambda r: r.point.attack.auc),
        ("TPR at 1% FPR", lambda r: r.point.attack.tpr_at_1pct_fpr),
    ]
    for col, task in enumerate(tasks):
        rows = [r for r in frontier.rows if r.point.task == task]
        audited = [r for r in rows if r.point.attack is not None]
        for row, (name, value) in enumerate(metrics):
            ax = axes[row][col]
            attacks = sorted({r.point.attack.name.split(" (")[0] for r in audited})
            ax.set(title=f"{task}: {', '.join(attacks)} audit" if audited else task, ylabel=f"{name} (lower is better)")
            if not audited:
                ax.text(0.5, 0.5, "no audited run", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                continue
            _scatter(ax, audited, value, pareto_by=f"ε, utility, {ATTACK_METRICS[frontier.attack_metric]}")
            weak = [r for r in audited if r.point.attack.result == "inconclusive"]
            if weak:
                xs = _positions(audited)[0]
                ax.plot(
                    [xs[r.index] for r in weak],
                    [value(r) for r in weak],
                    "x",
                    color="black",
                    ms=6,
                    ls="none",
                    label="audit inconclusive (control failed)",
                )
            ax.axhline(CHANCE[name], color="grey", ls="--", lw=1, label=f"chance {CHANCE[name]}")
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("privacy vs attack success (lower is better)")
    return fig


def _figure(n_rows: int, n_cols: int):
    fig = Figure(figsize=(5.2 * n_cols, 4.2 * n_rows), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [[fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1) for c in range(n_cols)] for r in range(n_rows)]


def _positions(rows: list[Row]) -> tuple[dict[int, float], float, float | None]:
    """x of each row: ε itself; ∞ and 0 mapped past the largest and below the smallest finite ε."""
    finite = sorted({r.point.epsilon for r in rows if r.point.private and r.point.epsilon > 0})
    lo, hi = (finite[0], finite[-1]) if finite else (1.0, 1.0)
    x_inf, x_zero = hi * 4, lo / 4
    xs = {
        r.index: (x_inf if not r.point.private else x_zero if r.point.epsilon == 0 else r.point.epsilon) for r in rows
    }
    return xs, x_inf, (x_zero if any(r.point.private and r.point.epsilon == 0 for r in rows) else None)


def _scatter(ax, rows: list[Row], value, *, pareto_by: str) -> None:
    xs, x_inf, x_zero = _positions(rows)
    for mechanism in dict.fromkeys(r.point.mechanism for r in rows):
        group = [r for r in rows if r.point.mechanism == mechanism]
        for private, marker in ((True, "o"), (False, ">")):
            pts = [r for r in group if r.point.private == private]
            if pts:
                ax.plot(
                    [xs[r.index] for r in pts],
                    [value(r) for r in pts],
                    marker,
                    ms=7,
                    ls="none",
                    label=mechanism if private else "not private" + (f" ({mechanism})" * (mechanism != "none")),
                )
    optimal = [r for r in rows if r.pareto.optimal]
    ax.plot(
        [xs[r.index] for r in optimal],
        [value(r) for r in optimal],
        "o",
        ms=15,
        mfc="none",
        mec="crimson",
        mew=1.5,
        ls="none",
        label=f"Pareto-optimal ({pareto_by})",
    )
    for r in rows:
        ax.annotate(f"#{r.index}", (xs[r.index], value(r)), textcoords="offset points", xytext=(6, 4), fontsize=8)
    _epsilon_axis(ax, rows, x_inf, x_zero)


def _epsilon_axis(ax, rows: list[Row], x_inf: float, x_zero: float | None) -> None:
    """Log ε axis with ticks at the sweep's own ε values, plus "0" and "∞ (not private)" when used."""
    ax.set_xscale("log")
    finite = sorted({r.point.epsilon for r in rows if r.point.private and r.point.epsilon > 0})
    if len(finite) > 8:  # many values: a decade grid instead
        finite = [10.0**e for e in range(math.floor(math.log10(finite[0])), math.ceil(math.log10(finite[-1])) + 1)]
    ticks, labels = list(finite), [f"{e:.2g}" for e in finite]  # 0.998 (a target of 1) shows as 1
    if x_zero is not None:
        ticks, labels = [x_zero, *ticks], ["0", *labels]
    if any(not r.point.private for r in rows):
        ticks, labels = [*ticks, x_inf], [*labels, NOT_PRIVATE.replace(" ", "\n", 1)]
        if finite:
            ax.axvline(math.sqrt(finite[-1] * x_inf), color="grey", ls=":", lw=1)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(labels)
    lo, hi = min(ticks), max(ticks)
    ax.set_xlim(lo / 2, hi * 2)
    units = sorted({str(r.point.unit) for r in rows if r.point.private})
    ax.set_xlabel(f"ε ({units[0] + ' level, ' if len(units) == 1 else ''}accountant; log scale)")
    ax.grid(True, alpha=0.3)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        fig.clear()
    return buf.getvalue()
