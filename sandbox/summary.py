"""Human-readable summaries of run records; `python -m sandbox.summary DIR` tabulates a run or a sweep.

Records are read as typed ``sandbox.record.RunRecord``s; a bad one is bad input: one ``error: …``
line naming the file and the key, exit 3 (``sandbox.cli``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from sandbox.cli import Exit, fail, run_main
from sandbox.record import RecordError, RunRecord, load


def _json(record: RunRecord | dict) -> dict:
    return record.to_json() if isinstance(record, RunRecord) else record


def _privacy_text(privacy: dict) -> str:
    if privacy.get("epsilon") is None:
        return "not private"
    source = f", {privacy['noise_source']} noise" if privacy.get("noise_source") else ""
    return (
        f"ε = {privacy['epsilon']:.2f} (δ = {privacy['delta']:.0e}, {privacy['unit']}-level, "
        f"{privacy['accountant']}, {_sampling_text(privacy)}, "
        f"σ = {privacy['noise_multiplier']:.3f}, {privacy['steps']} steps{source})"
    )


def _sampling_text(privacy: dict) -> str:
    if privacy.get("sample_rate") is None:  # DP-FTRL: no sampling, a participation rule
        return f"sampling {privacy['sampling']}"
    return f"{privacy['sampling']} q = {privacy['sample_rate']:.4g}"


def noise_warning(privacy: dict) -> str | None:
    """The record's warning when its DP noise was seeded (replayable from the record), else None."""
    if privacy.get("noise_source") != "seeded":
        return None
    return privacy.get("noise_warning") or (
        "seeded noise (research mode): anyone holding this record can "
        "regenerate the DP noise; this model is NOT differentially private "
        "against them"
    )


def _top_key(metrics: dict) -> str:
    return next(key for key in metrics if key.startswith("top") and key != "top1")


def ranking_text(ranking: dict) -> str:
    """Recall@k and NDCG@k of held-out users next to popularity (recommendation tasks)."""
    m, pop = ranking["held_out_users"], ranking["held_out_users_popularity"]
    r, n = (next(key for key in m if key.startswith(p)) for p in ("recall@", "ndcg@"))
    t = ranking["training_users"]
    diff = (ranking.get("held_out_users_vs_popularity") or {}).get(r) or {}
    vs = (
        f", difference {diff['difference']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]" if diff.get("ci") else ""
    )
    return (
        f"held-out users {r} {m[r]:.3f} (popularity {pop[r]:.3f}{vs}), {n} {m[n]:.3f} (popularity {pop[n]:.3f}); "
        f"training users' held-out items {r} {t[r]:.3f}"
    )


def describe_run(record: RunRecord | dict, run_dir: Path) -> str:
    """One paragraph: task, utility next to the baseline, privacy, where the results are."""
    record = _json(record)
    m, base = record["metrics"], record["metrics"]["baseline"]
    k = _top_key(m)
    name = "most-frequent" if "ranking" not in m else "popularity"
    return (
        f"{record['task']} · {record['mode']} · {record['privacy']['mechanism']}: "
        f"{k} accuracy {m[k]:.3f} ({name} baseline {base[k]:.3f}), "
        f"top1 {m['top1']:.3f} (baseline {base['top1']:.3f})\n"
        + (f"  ranking: {ranking_text(m['ranking'])}\n" if "ranking" in m else "")
        + f"  privacy: {_privacy_text(record['privacy'])}\n"
        + (f"  WARNING: {warning}\n" if (warning := noise_warning(record["privacy"])) else "")
        + (f"  audit: {audit_text(record['audit'])}\n" if record.get("audit") else "")
        + (f"  ledger: {text}\n" if (text := ledger_text(record.get("ledger"))) else "")
        + f"  results: {run_dir / 'record.json'}  ({record['timing']['seconds']:.0f} s)"
    )


def audit_text(a: dict) -> str:
    """The audit in one line: who was attacked how, what it found, and whether it can be trusted."""
    ci = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]"  # noqa: E731
    if a["attack"] == "suggestions":
        mem, attr = a["membership"], a["attribute"]
        text = (
            f"suggestions (user level, {a['threat']}): membership AUC {mem['auc']:.3f} {ci(mem['auc_ci'])}, "
            f"TPR at 1% FPR {mem['tpr_at_fpr']['0.01']:.3f}"
        )
        if attr.get("result") == "measured":
            m, o = attr["members"], attr["non_members"]
            text += (
                f"; attribute '{attr['name']}' advantage members {m['advantage']:.3f} {ci(m['advantage_ci'])}, "
                f"non-members {o['advantage']:.3f} {ci(o['advantage_ci'])}, gap {attr['gap']:.3f} "
                f"{ci(attr['gap_ci'])} (base rate {m['base_rate']:.3f})"
            )
        else:
            text += f"; attribute inference: {attr.get('reason', attr.get('result'))}"
        return text
    if a["attack"] == "canary_clients":
        lo, hi = a["epsilon_estimate_ci"]
        est = "∞" if a["epsilon_estimate"] is None else f"{a['epsilon_estimate']:.2f}"
        acc = "not private" if a["accountant_epsilon"] is None else f"accountant ε = {a['accountant_epsilon']:.2f}"
        return (
            f"canary_clients ({a['n_canaries']} canaries, final model): ε estimate {est} "
            f"[{lo:.2f}, {'∞' if hi is None else f'{hi:.2f}'}] (an estimate, not a bound); {acc}{_model_eps(a)}"
            f" → {a['result'].upper()}: {a['reason']}"
        )
    if "auc" not in a and a.get("finding"):  # federated audits (server_view, canary_clients) state their finding
        return (
            f"{a['attack']} ({a.get('level')} level, {a.get('threat')}): {a['finding']} → "
            f"{a['result'].upper()}: {a.get('reason')}"
        )
    eps, cmp = a["accountant_epsilon"], a.get("accountant_comparison") or {}
    one_run = a.get("one_run_eps_lower_bound")
    bounds = (
        f"one-run ε ≥ {one_run:.2f} (95%)"
        if one_run is not None
        else f"many-targets ε heuristic {a['eps_lower_bound']:.2f} (not a 95% bound)"
    )
    if cmp.get("epsilon") is not None and cmp.get("epsilon") != float("inf"):
        compared = f"; accountant ε = {eps:.2f}, {cmp['epsilon']:.2f} for {a.get('relation', 'this relation')}"
        compared += f" (AUC ≤ {a['max_auc_permitted']:.3f} permitted)" if a.get("max_auc_permitted") else ""
    elif eps is not None:
        compared = f"; accountant ε = {eps:.2f} ({a.get('relation', '?')}: not comparable)"
    else:
        compared = ""
    return (
        f"{a['attack']} ({a['level']} level, {a['threat']}): AUC {a['auc']:.3f} {ci(a['auc_ci'])}, "
        f"TPR at 1% FPR {a['tpr_at_1pct_fpr']:.3f} {ci(a['tpr_at_1pct_fpr_ci'])}; {bounds}{compared}"
        f" → {a['result'].upper()}: {a['reason']}"
    )


def summary_table(records: list[tuple[Path, RunRecord | dict]]) -> str:
    """One line per run: where, utility next to the baseline, ε."""
    lines = [f"{'run':<32} {'task':<9} {'mode':<10} {'top-k':>6} {'baseline':>9} {'top-1':>6}  privacy"]
    for path, r in records:
        r = _json(r)
        m = r["metrics"]
        p = r["privacy"]
        k = _top_key(m)
        eps = (
            "not private"
            if p.get("epsilon") is None
            else f"ε = {p['epsilon']:.2f} (δ = {p['delta']:.0e}, {p['unit']} level, {p['accountant']})"
            + (" SEEDED NOISE: not private against whoever holds the record" if noise_warning(p) else "")
        )
        lines.append(
            f"{path.parent.name:<32} {r.get('task', 'emoji'):<9} {r['mode']:<10} {m[k]:>6.3f} "
            f"{m['baseline'][k]:>9.3f} {m['top1']:>6.3f}  {eps}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sandbox.summary RUN_OR_SWEEP_DIR", file=sys.stderr)
        return fail("expected one directory", Exit.BAD_INPUT)
    root = Path(args[0])
    if not root.is_dir():
        return fail(f"{root}: no such directory")
    paths = sorted(root.glob("**/record.json"))
    if not paths:
        return fail(f"no record.json under {args[0]}")
    try:
        records = [(p, load(p)) for p in paths]
    except RecordError as exc:
        return fail(str(exc))
    print(f"\nResults under {args[0]}/ (record.json and model.pt in each run directory):")
    print(summary_table(records))
    return 0


if __name__ == "__main__":
    run_main(main)


def _model_eps(a: dict) -> str:
    """The exact ε of the canary-client test under the run's own noise, when the record has it."""
    m = a.get("model_epsilon") or {}
    return "" if m.get("epsilon") is None else f"; this test's exact ε under the run's noise = {m['epsilon']:.2f}"


def ledger_text(ledger: dict | None) -> str:
    """What the run did to its data set's ledger, when it changed the ε at some unit ("" otherwise)."""
    if not ledger:
        return ""
    shown = lambda v: "∞" if v is None else f"{v:.3f}"  # noqa: E731
    changed = [e for e in ledger["epsilon"] if e["before"] != e["after"]]
    if not changed:
        return ""
    parts = ", ".join(f"{e['unit']} level {shown(e['before'])} → {shown(e['after'])}" for e in changed)
    why = (
        " (a non-private training on this data set, e.g. an audit's control: its ε is now unbounded)"
        if any(e["after"] is None and e["before"] is not None for e in changed)
        else ""
    )
    return f"data set {ledger['dataset'][:12]} ε {parts}{why}; {ledger['path']} ({ledger.get('what') or 'this run'})"
