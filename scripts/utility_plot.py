"""Utility against population (scripts/utility-at-scale): utility.png and utility.md.

Reads every ``ROOT/<users>/<run>/record.json`` and writes, beside them, the plot of held-out
utility against population for FedAvg, DP-FedAvg and DP-FTRL (ε as recorded) with the baseline,
and a Markdown table. Emoji: top-5 accuracy against the most-frequent baseline; the last line
names the smallest population at which DP-FedAvg keeps ≥ 90% of FedAvg's top-5. Jobs and
channels: held-out users' recall@k against popularity; the last line names the smallest
population at which DP-FedAvg beats popularity with its 95% CI above 0 (or says that none does).

``python scripts/utility_plot.py ROOT [MORE_ROOTS...]`` (writes into ROOT)
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "none": "federated, not private",
    "dpfedavg": "DP-FedAvg (C = 1)",
    "dpfedavg-adaptive": "DP-FedAvg, adaptive C",
    "dpftrl": "DP-FTRL",
}
SHARE = 0.9  # of FedAvg's top-5 that DP-FedAvg must keep


def _measure(record: dict) -> dict:
    """The run's utility: emoji top-5 and its most-frequent baseline; recommenders recall@k of
    held-out users, popularity's, and the paired 95% CI of the difference (as the run recorded it)."""
    metrics = record["metrics"]
    if "ranking" not in metrics:  # the recommenders record metrics.ranking (sandbox.tasks.ranking)
        return {"value": metrics["top5"], "baseline": metrics["baseline"]["top5"], "ci": None, "metric": "top-5"}
    ranking = metrics["ranking"]
    name = next(k for k in ranking["held_out_users"] if k.startswith("recall@"))
    return {
        "value": ranking["held_out_users"][name],
        "baseline": ranking["held_out_users_popularity"][name],
        "ci": tuple(ranking["held_out_users_vs_popularity"][name]["ci"]),
        "metric": name,
    }


def collect(*roots: Path) -> dict[int, dict[str, dict]]:
    """{users: {mechanism: {"value", "baseline", "ci", "metric", "epsilon", "clients"}}} of the runs under ``roots``."""
    rows: dict[int, dict[str, dict]] = defaultdict(dict)
    for path in sorted(p for root in roots for p in root.glob("*/*/record.json")):
        record = json.loads(path.read_text())
        privacy = record.get("privacy") or {}
        curve = record.get("curve") or [{}]
        key = privacy.get("mechanism", "none") + ("-adaptive" if privacy.get("clipping") == "adaptive" else "")
        rows[record["data"]["n_users"]][key] = {
            **_measure(record),
            "task": record.get("task", "emoji"),
            "epsilon": privacy.get("epsilon"),
            "clients": sum(p.get("clients", 0) for p in curve) / max(1, len(curve)),
        }
    if not rows:
        raise SystemExit(f"utility_plot.py: no record.json under {', '.join(f'{r}/*/*/' for r in roots)}")
    return dict(sorted(rows.items()))


def table(rows: dict[int, dict[str, dict]]) -> str:
    """The Markdown table and its verdict line.

    Emoji: the smallest population at which the better measured DP-FedAvg variant keeps ≥ 90% of
    FedAvg's top-5. Recommenders: the smallest at which it beats popularity with the lower end of
    its 95% CI above 0."""
    keys = ("none", "dpfedavg", "dpfedavg-adaptive", "dpftrl")
    first = next(iter(next(iter(rows.values())).values()))
    ranking, metric = first["ci"] is not None, first["metric"]
    last = "best DP-FedAvg − popularity [95% CI]" if ranking else "best DP-FedAvg / FedAvg"
    lines = [
        f"| users | clients/round | FedAvg {metric} | DP-FedAvg C = 1 | DP-FedAvg adaptive C | DP-FTRL | {last} | "
        f"{'popularity' if ranking else 'baseline'} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    smallest = None
    for users, runs in rows.items():
        fedavg, fixed, adaptive, ftrl = (runs.get(k, {}).get("value") for k in keys)
        best = max((k for k in keys[1:3] if k in runs), key=lambda k: runs[k]["value"], default=None)
        if ranking:
            ci = runs[best]["ci"] if best else None
            good = ci is not None and ci[0] > 0
            verdict = f"{runs[best]['value'] - runs[best]['baseline']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "—"
        else:
            share = runs[best]["value"] / fedavg if best and fedavg else None
            good = share is not None and share >= SHARE
            verdict = f"{share:.0%}" if share is not None else "—"
        if good and smallest is None:
            smallest = users
        clients = next(runs[k]["clients"] for k in (*keys[1:], "none") if k in runs)
        cells = [f"{v:.3f}" if v is not None else "—" for v in (fedavg, fixed, adaptive, ftrl)]
        baseline = next(iter(runs.values()))["baseline"]
        lines.append(f"| {users:,} | {clients:,.0f} | {' | '.join(cells)} | {verdict} | {baseline:.3f} |")
    rule = "beats popularity (CI above 0)" if ranking else f"keeps ≥ {SHARE:.0%} of FedAvg's {metric}"
    verdict = (
        f"DP-FedAvg at ε = 4 {rule} from **{smallest:,} users** (the smallest measured)."
        if smallest is not None
        else f"DP-FedAvg at ε = 4 {rule} at none of the measured populations."
    )
    return "\n".join(lines) + "\n\n" + verdict + "\n"


def plot(rows: dict[int, dict[str, dict]], path: Path) -> None:
    users = list(rows)
    first = next(iter(rows[users[0]].values()))
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for key, label in LABELS.items():
        points = [(u, rows[u][key]["value"]) for u in users if key in rows[u]]
        if points:
            axes.plot(*zip(*points), marker="o", label=label)
    axes.plot(
        users,
        [next(iter(rows[u].values()))["baseline"] for u in users],
        "k:",
        label="most-frequent baseline" if first["ci"] is None else "popularity",
    )
    fedavg = [(u, SHARE * rows[u]["none"]["value"]) for u in users if "none" in rows[u]]
    if fedavg and first["ci"] is None:
        axes.plot(*zip(*fedavg), color="grey", linewidth=0.8, linestyle="--", label=f"{SHARE:.0%} of FedAvg")
    axes.set_xscale("log")
    axes.set_xlabel("users in the population")
    axes.set_ylabel(f"held-out users' {first['metric']}")
    axes.set_title(f"{first['task']}: utility against population (ε = 4)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python scripts/utility_plot.py ROOT [MORE_ROOTS...]")
    root = Path(argv[0])
    rows = collect(*(Path(a) for a in argv))
    plot(rows, root / "utility.png")
    text = table(rows)
    (root / "utility.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main(sys.argv[1:])
