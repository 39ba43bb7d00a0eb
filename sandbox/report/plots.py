"""The report's figures as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

Each function takes plain numbers already read from the run record and returns PNG bytes;
files are written by the caller. The ROC is drawn by the audit's own ``plot_roc`` so that the
report's curve is the one the harness drew.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Series = tuple[list[float], list[float]]


def _figure(width: float = 6.4, height: float = 3.6, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    fig.clear()
    return buf.getvalue()


def _grouped_bars(ax, values: dict[str, dict[str, float]], *, fmt: str) -> None:
    """One group of bars per ``values`` key, one bar (and colour) per inner key, labelled with its value."""
    groups = list(values)
    names = list(dict.fromkeys(n for g in groups for n in values[g]))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j, g in enumerate(groups) if name in values[g]]
        ys = [values[g][name] for g in groups if name in values[g]]
        ax.bar_label(ax.bar(xs, ys, width, label=name), fmt=fmt, fontsize=7)
    ax.set_xticks(range(len(groups)), groups)


def learning_curve(
    metrics: dict[str, Series], baselines: dict[str, float], loss: Series | None, *, xlabel: str, baseline_name: str
) -> bytes:
    """Held-out metrics vs step/round (left), each with its baseline as a dashed line of the same
    colour; training loss (right) when the curve has it."""
    fig, axes = _figure(9.6 if loss else 6.4, 3.6, ncols=2 if loss else 1)
    ax = axes[0]
    for label, (x, y) in metrics.items():
        (line,) = ax.plot(x, y, marker="o", ms=3, label=f"{label} (model)")
        if label in baselines:
            ax.axhline(
                baselines[label], ls="--", lw=1.2, color=line.get_color(), label=f"{label} ({baseline_name} baseline)"
            )
    ax.set(xlabel=xlabel, ylabel="accuracy on held-out users", title="held-out accuracy")
    for a in axes:  # steps and rounds are whole numbers
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if loss:
        axes[1].plot(*loss, color="0.35", marker=".", ms=3)
        axes[1].set(xlabel=xlabel, ylabel="training loss", title="training loss")
        axes[1].grid(alpha=0.3)
    return _png(fig)


def epsilon_curve(
    x: list[float], eps: list[float], *, xlabel: str, unit: str, delta: float | None, target: float | None
) -> bytes:
    """ε spent so far vs step/round, with the target ε (when the record states one) dotted."""
    fig, (ax,) = _figure()
    at = f" at δ = {delta:g}" if delta is not None else ""
    ax.plot(x, eps, marker="o", ms=3, label=f"ε ({unit} level{at})")
    if target is not None:
        ax.axhline(target, ls=":", color="C3", label=f"target ε = {target:g}")
    ax.set(xlabel=xlabel, ylabel="ε", title="privacy spent", ylim=(0, None))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str) -> bytes:
    """Log-log ROC with the chance diagonal: ``sandbox.audit.metrics.plot_roc`` (which writes a
    file), read back as bytes. Raises ValueError on scores it cannot plot."""
    from sandbox.audit.metrics import plot_roc  # lazy: matplotlib only when a figure is drawn

    with tempfile.TemporaryDirectory() as tmp:
        path = plot_roc(curves, Path(tmp) / "roc.png", title=title)
        return path.read_bytes()


def unseen_canary_exposure(n_fresh: int) -> float:
    """Expected exposure by rank of a canary the model never saw: its rank is uniform on
    1..n_fresh + 1, so E = log2(n + 1) − mean(log2 r) (→ log2 e ≈ 1.44 bits for large n)."""
    ranks = np.arange(1, n_fresh + 2)
    return math.log2(n_fresh + 1) - float(np.mean(np.log2(ranks)))


def exposure_bars(
    values: dict[str, dict[str, float]], *, ceiling: float | None, chance: float | None, title: str
) -> bytes:
    """Grouped bars: for each estimator (``values`` keys, e.g. "by rank"), one bar per statistic
    (e.g. "trained hosts, mean"); the rank method's ceiling and the unseen-canary level as lines."""
    fig, (ax,) = _figure()
    _grouped_bars(ax, values, fmt="%.2f")
    if ceiling is not None:
        ax.axhline(ceiling, ls="--", color="0.3", lw=1, label=f"rank ceiling log2(fresh+1) = {ceiling:.2f}")
    if chance is not None:
        ax.axhline(chance, ls=":", color="C3", lw=1.2, label=f"unseen canary, expected = {chance:.2f}")
    ax.set(ylabel="exposure (bits)", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def utility_bars(values: dict[str, dict[str, float]], *, ylabel: str, title: str) -> bytes:
    """Grouped bars: for each metric (``values`` keys), the model and its baseline side by side."""
    fig, (ax,) = _figure()
    _grouped_bars(ax, values, fmt="%.3f")
    ax.set(ylabel=ylabel, title=title)
    ax.margins(y=0.15)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
