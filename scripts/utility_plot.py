"""Utility against population (scripts/utility-at-scale): utility.png and utility.md.

Reads every ``ROOT/<users>/<run>/record.json`` and writes, beside them, the plot of held-out
top-5 accuracy against population for FedAvg, DP-FedAvg and DP-FTRL (ε as recorded), the
most-frequent baseline, and a Markdown table; the last line names the smallest population at
which DP-FedAvg keeps ≥ 90% of FedAvg's top-5 (or says that none of the measured ones does).

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
    "none": "FedAvg(M), not private",
    "dpfedavg": "DP-FedAvg (C = 1)",
    "dpfedavg-adaptive": "DP-FedAvg, adaptive C",
    "dpftrl": "DP-FTRL",
}
SHARE = 0.9  # of FedAvg's top-5 that DP-FedAvg must keep


def collect(*roots: Path) -> dict[int, dict[str, dict]]:
    """{users: {mechanism: {"top5", "baseline", "epsilon", "clients"}}} of the runs under ``root``."""
    rows: dict[int, dict[str, dict]] = defaultdict(dict)
    for path in sorted(p for root in roots for p in root.glob("*/*/record.json")):
        record = json.loads(path.read_text())
        privacy = record.get("privacy") or {}
        curve = record.get("curve") or [{}]
        key = privacy.get("mechanism", "none") + ("-adaptive" if privacy.get("clipping") == "adaptive" else "")
        rows[record["data"]["n_users"]][key] = {
            "top5": record["metrics"]["top5"],
            "baseline": record["metrics"]["baseline"]["top5"],
            "epsilon": privacy.get("epsilon"),
            "clients": sum(p.get("clients", 0) for p in curve) / max(1, len(curve)),
        }
    if not rows:
        raise SystemExit(f"plot.py: no record.json under {', '.join(f'{r}/*/*/' for r in roots)}")
    return dict(sorted(rows.items()))


def table(rows: dict[int, dict[str, dict]]) -> str:
    """The Markdown table; the 90% rule reads the better of the DP-FedAvg variants measured."""
    keys = ("none", "dpfedavg", "dpfedavg-adaptive", "dpftrl")
    lines = [
        "| users | clients/round | FedAvg top-5 | DP-FedAvg C = 1 | DP-FedAvg adaptive C | DP-FTRL | "
        "best DP-FedAvg / FedAvg | baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    smallest = None
    for users, runs in rows.items():
        fedavg, fixed, adaptive, ftrl = (runs.get(k, {}).get("top5") for k in keys)
        dp = max((v for v in (fixed, adaptive) if v is not None), default=None)
        share = dp / fedavg if dp is not None and fedavg else None
        if share is not None and share >= SHARE and smallest is None:
            smallest = users
        clients = next(runs[k]["clients"] for k in (*keys[1:], "none") if k in runs)
        cells = [f"{v:.3f}" if v is not None else "—" for v in (fedavg, fixed, adaptive, ftrl)]
        baseline = next(iter(runs.values()))["baseline"]
        ratio = f"{share:.0%}" if share is not None else "—"
        lines.append(f"| {users:,} | {clients:,.0f} | {' | '.join(cells)} | {ratio} | {baseline:.3f} |")
    verdict = (
        f"DP-FedAvg at ε = 4 keeps ≥ {SHARE:.0%} of FedAvg's top-5 from **{smallest:,} users** (the smallest measured)."
        if smallest is not None
        else f"DP-FedAvg at ε = 4 keeps ≥ {SHARE:.0%} of FedAvg's top-5 at none of the measured populations."
    )
    return "\n".join(lines) + "\n\n" + verdict + "\n"


def plot(rows: dict[int, dict[str, dict]], path: Path) -> None:
    users = list(rows)
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for key, label in LABELS.items():
        points = [(u, rows[u][key]["top5"]) for u in users if key in rows[u]]
        if points:
            axes.plot(*zip(*points), marker="o", label=label)
    axes.plot(users, [next(iter(rows[u].values()))["baseline"] for u in users], "k:", label="most-frequent baseline")
    fedavg = [(u, SHARE * rows[u]["none"]["top5"]) for u in users if "none" in rows[u]]
    if fedavg:
        axes.plot(*zip(*fedavg), color="grey", linewidth=0.8, linestyle="--", label=f"{SHARE:.0%} of FedAvg")
    axes.set_xscale("log")
    axes.set_xlabel("users in the population")
    axes.set_ylabel("held-out top-5 accuracy")
    axes.set_title("Emoji suggestions: utility against population (ε = 4, ~2,000 users a round)")
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
