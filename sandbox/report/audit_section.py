"""The audit section: the audit's tables, the log-log ROC from ``audit_scores.npz``, canary exposure.

Harness audits (``sandbox.audit.harness``: loss, lira, rmia, canary) keep their metrics flat in
``audit``; ``audit=suggestions`` (``sandbox.audit.recsys``) under ``audit.membership`` and
``audit.attribute``, with no per-user scores file.
"""

from __future__ import annotations

import numpy as np

from sandbox.report import plots
from sandbox.report.document import Block, Figure, Heading, Paragraph, Skipped, Table
from sandbox.report.fields import Fields, ReportError, fmt, fmt_ci

# --- audit ------------------------------------------------------------------------------------


def audit(r: Fields, scores: dict | None, scores_file: str, *, title: str = "Audit", prefix: str = "") -> list[Block]:
    """The audit of record ``r``; ``title`` its heading, ``prefix`` its figures' (report_{prefix}roc.png)."""
    out: list[Block] = [Heading(title)]
    a = r.sub("audit")
    if a is None:
        return out + [
            Skipped(s, "the record has no audit section (audit=none)") for s in ("audit", "ROC", "canary exposure")
        ]
    out += _suggestions_tables(a) if a.get("attack") == "suggestions" else _harness_tables(a)
    out.append(Heading("ROC (log-log)", 3))
    if scores:
        title = f"{a.get('attack')}, {a.get('level')} level, {a.get('threat')} threat"
        try:
            png = plots.roc(scores, title=title)
        except ValueError as exc:
            raise ReportError(f"{scores_file}: cannot plot: {exc}") from None
        out.append(
            Figure(
                f"report_{prefix}roc.png",
                png,
                f"ROC of the audit's scores ({scores_file}), log-log, "
                "chance dashed; rates of 0 drawn at the axis floor.",
            )
        )
    elif a.get("attack") == "suggestions":
        out.append(Skipped("ROC", "audit=suggestions keeps no per-user scores (no audit_scores.npz)"))
    else:
        out.append(Skipped("ROC", f"no {scores_file} in the run directory"))
    return out + _exposure(a, prefix)


def _harness_tables(a: Fields) -> list[Block]:
    out: list[Block] = [
        Paragraph(
            f"{a.get('attack')} attack, {a.get('level')} level, {a.get('threat')} threat: "
            f"{fmt(a.get('n_members'))} members vs {fmt(a.get('n_nonmembers'))} non-members."
        )
    ]
    rows = [
        (label, fmt(a.get(key, kind=float)), fmt_ci(a.get(f"{key}_ci", kind=list)))
        for key, label in (
            ("auc", "AUC"),
            ("tpr_at_0.1pct_fpr", "TPR at 0.1% FPR"),
            ("tpr_at_1pct_fpr", "TPR at 1% FPR"),
            ("eps_lower_bound", "many-targets ε heuristic (not a 95% bound)"),
            ("one_run_eps_lower_bound", "one-run ε lower bound (95%)"),
            ("max_auc_permitted", "largest AUC the accountant's ε permits"),
            ("accountant_epsilon", "accountant ε"),
        )
        if a.get(key) is not None
    ]
    out.append(Table(("quantity", "value", "CI"), tuple(rows)))
    if a.get("relation") is not None:
        cmp = a.sub("accountant_comparison")
        conversion = cmp.get("conversion") or cmp.get("reason") if cmp is not None else None
        out.append(Paragraph(f"Relation tested: {a.get('relation')}. Accountant's ε for it: {conversion or '—'}."))
    c = a.sub("control")
    if c is not None:
        pipeline = f", {c.get('pipeline')}" if c.get("pipeline") else ""
        out.append(
            Paragraph(
                f"Positive control ({c.get('ran_on') or '?'}{pipeline}): "
                f"{'passed' if c.get('passed') else 'not passed'}: {c.get('reason') or ''}"
            )
        )
    if a.get("result") is not None:
        out.append(Paragraph(f"Audit result: {str(a.get('result')).upper()}: {a.get('reason') or ''}"))
    return out


def _suggestions_tables(a: Fields) -> list[Block]:
    out: list[Block] = [Paragraph(f"suggestions audit, {a.get('level')} level; the attacker sees {a.get('threat')}.")]
    mem = a.sub("membership")
    if mem is not None:
        rows = [("AUC", fmt(mem.get("auc", kind=float)), fmt_ci(mem.get("auc_ci", kind=list)))]
        for fpr in mem.get("tpr_at_fpr", kind=dict) or {}:
            rows.append(
                (
                    f"TPR at {float(fpr) * 100:g}% FPR",
                    fmt(mem.get("tpr_at_fpr", fpr, kind=float)),
                    fmt_ci(mem.get("tpr_at_fpr_ci", fpr, kind=list)),
                )
            )
        out += [
            Paragraph(
                f"Membership: {fmt(mem.get('n_members'))} members vs {fmt(mem.get('n_nonmembers'))} "
                f"non-members; score: {mem.get('score') or '?'}."
            ),
            Table(("quantity", "value", "CI"), tuple(rows)),
        ]
    att = a.sub("attribute")
    if att is not None and att.get("result") == "measured":
        rows = [
            (
                label,
                fmt(g.get("n")),
                fmt(g.get("base_rate", kind=float)),
                fmt(g.get("advantage", kind=float)),
                fmt_ci(g.get("advantage_ci", kind=list)),
                fmt(g.get("auc", kind=float)),
                fmt_ci(g.get("auc_ci", kind=list)),
            )
            for key, label in (("members", "members"), ("non_members", "non-members"))
            if (g := att.sub(key))
        ]
        rows.append(
            (
                "gap (members − non-members)",
                "",
                "",
                fmt(att.get("gap", kind=float)),
                fmt_ci(att.get("gap_ci", kind=list)),
                "",
                "",
            )
        )
        out += [
            Paragraph(f"Attribute inference of '{att.get('name')}' from the list:"),
            Table(("group", "n", "base rate", "advantage", "CI", "AUC", "CI"), tuple(rows)),
        ]
    elif att is not None:
        out.append(Paragraph(f"Attribute inference: {att.get('reason') or att.get('result')}"))
    return out


def _exposure(a: Fields, prefix: str = "") -> list[Block]:
    out: list[Block] = [Heading("Canary exposure", 3)]
    c = a.sub("canaries")
    if c is None or (c.get("exposure_by_rank") is None and c.get("exposure_by_fit") is None):
        return out + [
            Skipped("canary exposure", f"the {a.get('attack')} audit records no canary exposure (audit=canary does)")
        ]
    bars: dict[str, dict[str, float]] = {}
    rows = []
    for method in ("rank", "fit"):
        for hosts in ("trained_hosts", "untrained_hosts"):
            s = c.sub(f"exposure_by_{method}", hosts)
            if s is None:
                continue
            rows.append(
                (
                    f"by {method}",
                    hosts.replace("_", " "),
                    fmt(s.get("n")),
                    fmt(s.get("mean", kind=float)),
                    fmt(s.get("max", kind=float)),
                )
            )
            for stat in ("mean", "max"):
                if s.get(stat, kind=float) is not None:
                    bars.setdefault(f"by {method}", {})[f"{hosts.split('_')[0]} hosts, {stat}"] = s.get(
                        stat, kind=float
                    )
    repeats, users = c.get("repeats"), c.get("users_per_canary")
    fresh = c.get("fresh", kind=int)
    each = f"every canary was repeated {repeats} times" if repeats is not None else "the record states no repeat count"
    each += f" in {users} user(s)' data" if users is not None else ""
    out.append(
        Paragraph(
            f"The record has no per-repetition exposure: {each}, and it keeps the count, mean and max exposure "
            "of canaries whose host trained and of those whose host did not. So the figure shows those at this one "
            "repetition count, not exposure vs repetitions (that needs one run per data.canary_repeats value)."
        )
    )
    out.append(Table(("estimator", "canaries", "n", "mean (bits)", "max (bits)"), tuple(rows)))
    if bars:
        chance = plots.unseen_canary_exposure(fresh) if fresh else None
        png = plots.exposure_bars(
            bars,
            ceiling=c.get("max_exposure_possible_by_rank", kind=float),
            chance=chance,
            title=f"exposure at {repeats} repetitions" if repeats is not None else "exposure",
        )
        out.append(
            Figure(
                f"report_{prefix}exposure.png",
                png,
                "Canary exposure (bits) of canaries whose host trained vs "
                "did not; the unseen-canary line is the expected exposure "
                f"by rank among {fmt(fresh)} fresh canaries.",
            )
        )
    return out


def scores_from_npz(npz, origin: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``audit_scores.npz`` (``names``, ``scores_i``, ``members_i``; see sandbox.audit.harness) → curves."""
    if "names" not in npz:
        raise ReportError(f"{origin}: no 'names' array (written by sandbox.audit.harness)")
    curves = {}
    for i, name in enumerate(npz["names"].tolist()):
        if f"scores_{i}" not in npz or f"members_{i}" not in npz:
            raise ReportError(f"{origin}: scores_{i} / members_{i}: missing for curve {name!r}")
        s, m = np.asarray(npz[f"scores_{i}"], float), np.asarray(npz[f"members_{i}"])
        if s.ndim != 1 or s.shape != m.shape:
            raise ReportError(
                f"{origin}: scores_{i} and members_{i}: expected two 1-D arrays of one length, "
                f"got shapes {s.shape} and {m.shape}"
            )
        curves[str(name)] = (s, m)
    return curves
