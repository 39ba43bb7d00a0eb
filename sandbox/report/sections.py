"""The report's sections (header, utility, learning curve, ε, claims), each read into blocks.

A section the record does not have becomes one ``Skipped`` line saying why; a section it has
with a value of the wrong type is bad input (``ReportError`` naming the file and the key).
Values are shown as the record states them (4 significant digits), nothing is recomputed
except the expected exposure of an unseen canary, drawn as a reference line.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.report import plots
from sandbox.report.document import Block, Figure, Heading, Paragraph, Skipped, Table
from sandbox.report.fields import Fields, fmt, fmt_ci, typed, x_key

# --- header ---------------------------------------------------------------------------------

_PRIVACY_ROWS = (
    ("mechanism", "mechanism"),
    ("epsilon", "ε"),
    ("delta", "δ"),
    ("unit", "unit"),
    ("accountant", "accountant"),
    ("sampling", "sampling"),
    ("sample_rate", "sample rate q"),
    ("noise_multiplier", "noise multiplier σ"),
    ("clip_norm", "clip norm"),
    ("target_epsilon", "target ε"),
    ("neighbouring_relation", "neighbouring relation"),
    ("noise_source", "noise source"),
)


def header(r: Fields, run_dir: Path) -> list[Block]:
    """The run's identity and its privacy, exactly the fields the record has."""
    rows = [(key, fmt(r.get(key))) for key in ("task", "mode", "engine", "seed", "status") if r.get(key) is not None]
    p = r.sub("privacy")
    if p is None:
        rows.append(("privacy", "— (the record has no privacy section)"))
    else:
        for key, label in _PRIVACY_ROWS:
            if key == "epsilon" and p.get(key) is None and "epsilon" in p.data:
                rows.append((label, "not private (privacy.epsilon is null)"))
            elif p.get(key) is not None:
                rows.append((label, fmt(p.get(key, kind=float) if key in ("epsilon", "delta") else p.get(key))))
        if p.get("steps") is not None:
            rows.append(("rounds" if r.get("mode") == "federated" else "optimizer steps", fmt(p.get("steps"))))
    d = r.sub("data")
    for key, label in (
        ("n_users", "users"),
        ("n_train_users", "training users"),
        ("n_test_users", "held-out users"),
        ("n_examples", "training examples"),
    ):
        if d is not None and d.get(key) is not None:
            rows.append((label, fmt(d.get(key))))
    rows.append(("run directory", str(run_dir)))
    return [Table(("field", "value"), tuple(rows), css_id="run"), *noise_warning(r)]


def noise_warning(r: Fields) -> list[Block]:
    """A private run with seeded noise: the warning, in plain words, right under the header."""
    p = r.sub("privacy")
    if p is None or p.get("noise_source", kind=str) != "seeded":
        return []
    text = p.get("noise_warning", kind=str) or (
        "seeded noise (research mode): anyone holding this record can "
        "regenerate the DP noise; this model is NOT differentially private "
        "against them"
    )
    return [
        Paragraph(
            f"WARNING: {text}. The ε below is what the accountant computes for the mechanism; it does "
            "not hold against anyone who has record.json."
        )
    ]


# --- utility and learning curve ---------------------------------------------------------------


def _top_keys(r: Fields, points: list[dict]) -> list[str]:
    """The held-out accuracy keys (top-k first, then top1), from metrics or else from the curve."""
    source = r.get("metrics", kind=dict) or (points[-1] if points else {})
    keys = [k for k in source if k.startswith("top") and k[3:].isdigit()]
    return sorted(keys, key=lambda k: (k == "top1", k))


def utility(r: Fields) -> list[Block]:
    out: list[Block] = [Heading("Utility vs baseline")]
    m = r.sub("metrics")
    if m is None:
        return out + [Skipped("utility vs baseline", "the record has no metrics section")]
    rank = m.sub("ranking")
    base_name = "popularity" if rank is not None else "most-frequent"
    top = _top_keys(r, [])
    rows = [(k, fmt(m.get(k, kind=float)), fmt(m.get("baseline", k, kind=float))) for k in top]
    bars: dict[str, dict[str, float]] = {}
    if rank is None:
        for k in top:
            v, b = m.get(k, kind=float), m.get("baseline", k, kind=float)
            if v is not None:
                bars[k] = {"model": v, **({} if b is None else {"most-frequent baseline": b})}
    else:
        for group, label in (("held_out_users", "held-out users"), ("training_users", "training users")):
            model, pop = rank.sub(group), rank.sub(f"{group}_popularity")
            for key in [k for k in (model.data if model else {}) if k.startswith(("recall@", "ndcg@"))]:
                v, b = model.get(key, kind=float), pop.get(key, kind=float) if pop else None
                rows.append((f"{key}, {label}", fmt(v), fmt(b)))
                if v is not None:
                    bars[f"{key}\n{label}"] = {"model": v, **({} if b is None else {"popularity": b})}
    if not rows:
        return out + [Skipped("utility vs baseline", "metrics has no top-k accuracy nor ranking metrics")]
    split = m.get("split")
    out.append(
        Paragraph(
            f"Measured on {split or 'the held-out split'}"
            + (
                "; ranking on each user's held-out interactions (recall@k, NDCG@k) next to "
                "recommending the most popular items."
                if rank is not None
                else "; top-k accuracy next to always suggesting the most frequent labels."
            )
        )
    )
    out.append(Table(("metric", "model", f"{base_name} baseline"), tuple(rows)))
    if bars:
        png = plots.utility_bars(
            bars,
            ylabel="score",
            title="ranking vs popularity" if rank is not None else "held-out accuracy vs most-frequent baseline",
        )
        out.append(Figure("report_utility.png", png, f"Model vs {base_name} baseline."))
    return out


def _curve_points(r: Fields) -> list[dict]:
    points = r.get("curve", kind=list) or []
    for i, p in enumerate(points):
        typed(p, dict, f"{r.origin}: curve[{i}]")
    return points


def _series(r: Fields, points: list[dict], key: str) -> tuple[list[float], list[float]]:
    xk, xs, ys = x_key(points), [], []
    for i, p in enumerate(points):
        x, y = (typed(p.get(k), float, f"{r.origin}: curve[{i}].{k}") for k in (xk, key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def learning_curve(r: Fields) -> list[Block]:
    out: list[Block] = [Heading("Learning curve")]
    points = _curve_points(r)
    if not points:
        return out + [Skipped("learning curve", "the record has no curve")]
    xk, keys = x_key(points), _top_keys(r, points)
    metrics = {k: s for k in keys if (s := _series(r, points, k))[0]}
    if not metrics:
        return out + [Skipped("learning curve", "no curve point has held-out accuracy (top1/top-k)")]
    baselines = {k: v for k in metrics if (v := r.get("metrics", "baseline", k, kind=float)) is not None}
    loss = _series(r, points, "train_loss")
    n_eval = len(next(iter(metrics.values()))[0])
    out.append(
        Paragraph(
            f"Accuracy of held-out users at {n_eval} of the curve's {len(points)} points "
            f"(x: {xk}s), each baseline dashed in its metric's colour; training loss at every point."
            if loss[0]
            else f"Accuracy of held-out users at {n_eval} {xk}s."
        )
    )
    base_name = "popularity" if r.get("metrics", "ranking") is not None else "most-frequent"
    png = plots.learning_curve(metrics, baselines, loss if loss[0] else None, xlabel=xk, baseline_name=base_name)
    return out + [Figure("report_curve.png", png, f"Held-out accuracy vs {xk}, with the {base_name} baseline.")]


def epsilon_curve(r: Fields) -> list[Block]:
    out: list[Block] = [Heading("Privacy spent")]
    p = r.sub("privacy")
    points = _curve_points(r)
    xk = x_key(points) if points else "step"
    if p is None:
        return out + [Skipped(f"ε over {xk}s", "the record has no privacy section")]
    if p.get("epsilon", kind=float) is None:
        return out + [Skipped(f"ε over {xk}s", "not private (privacy.epsilon is null)")]
    xs, eps = _series(r, points, "epsilon")
    if not xs:
        return out + [Skipped(f"ε over {xk}s", "private, but no curve point records ε")]
    unit = p.get("unit") or "?"
    out.append(
        Paragraph(
            f"ε = {fmt(p.get('epsilon', kind=float))} after {fmt(p.get('steps'))} {xk}s "
            f"({unit} level, δ = {fmt(p.get('delta', kind=float))}, {p.get('accountant') or '?'} "
            f"accountant); the curve shows ε as accounted after each point."
        )
    )
    png = plots.epsilon_curve(
        xs, eps, xlabel=xk, unit=unit, delta=p.get("delta", kind=float), target=p.get("target_epsilon", kind=float)
    )
    return out + [Figure("report_epsilon.png", png, f"ε spent vs {xk}.")]


# --- claims -----------------------------------------------------------------------------------


def claims(found: list[tuple[Path, dict]]) -> list[Block]:
    out: list[Block] = [Heading("Claims")]
    if not found:
        return out + [
            Skipped("claims", "no claim_*.json in the run directory (python -m sandbox.claim CLAIM RUN_DIR writes one)")
        ]
    for path, data in found:
        c = Fields(data, str(path))
        out.append(Heading(f"{c.get('name') or path.stem}: {c.get('verdict', kind=str)}", 3))
        if c.get("promise"):
            out.append(
                Paragraph(
                    f"Promise: “{c.get('promise', kind=str)}” (claim file {c.get('claim_file') or '?'}; "
                    f"verdict in {path.name})"
                )
            )
        rows = []
        for i, e in enumerate(c.get("evidence", kind=list) or []):
            e = Fields(typed(e, dict, f"{path}: evidence[{i}]"), str(path), f"evidence[{i}].")
            reason = (e.get("reason") or "") + (f" [{e.get('source')}]" if e.get("source") else "")
            rows.append(
                (
                    e.get("check") or "?",
                    fmt(e.get("measured", kind=float)),
                    fmt_ci(e.get("ci", kind=list)),
                    e.get("bound") or "",
                    e.get("verdict") or "?",
                    reason,
                )
            )
        rows.append(("overall", "", "", "", c.get("verdict", kind=str), ""))
        out.append(Table(("check", "measured", "CI", "bound", "verdict", "reason"), tuple(rows)))
    return out


def verdict_line(r: Fields, found: list[tuple[Path, dict]], reaudits: list[tuple[str, Fields]] = ()) -> list[Block]:
    """The report's first line: each claim's verdict, then each audit's result (the run's, its re-audits')."""
    parts = [f"claim {d.get('name') or p.stem}: {d.get('verdict')}" for p, d in found]
    if r.get("audit", "result") is not None:
        parts.append(f"audit ({r.get('audit', 'attack')}): {str(r.get('audit', 'result')).upper()}")
    for name, sr in reaudits:
        if sr.get("audit", "result") is not None:
            parts.append(f"re-audit {name} ({sr.get('audit', 'attack')}): {str(sr.get('audit', 'result')).upper()}")
    return [Paragraph("Verdicts: " + "; ".join(parts) + ".")] if parts else []
