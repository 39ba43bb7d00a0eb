"""`make bench`: corpus build time, seconds per round and peak memory by population (issue 17).

Each population runs the real pipeline, ``python -m sandbox mode=federated privacy=dpfedavg``
(emoji task, DP-FedAvg at the default ε = 4, in-process engine), in its own process, whose peak
resident memory the record states (``timing.peak_rss_mb``, ``getrusage`` when the record is written;
``/usr/bin/time`` agreed within 3% at 100,000 users). The cohort is held at about 2,000 sampled
clients a round (q = 2,500 / users), so seconds per round compare engines at equal work while
the corpus and the partition grow. From the run's ``record.json``: ``timing.data_seconds``
(corpus drawn, split, featurised), ``timing.round_seconds`` (rounds without the held-out
evaluation), the mean clients per round, and the process' peak RSS.

``python -m benchmarks.population [USERS ...]`` (default 10000 100000 1000000; the million
takes about 5 minutes and 6 GB here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

POPULATIONS = (10_000, 100_000, 1_000_000)
ROUNDS = 10


def run_population(n_users: int, out_dir: Path) -> dict:
    """One federated DP run on ``n_users`` users; its record's timings and the process' peak RSS."""
    sample_rate = min(0.25, 2500 / n_users)
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "mode=federated",
        "privacy=dpfedavg",
        f"data.n_users={n_users}",
        f"data.n_workspaces={max(200, n_users // 50)}",
        f"federation.rounds={ROUNDS}",
        f"federation.eval_every={ROUNDS}",
        f"federation.sample_rate={sample_rate:g}",
        f"ledger.path={out_dir / 'ledger.json'}",
        f"hydra.run.dir={out_dir}",
    ]
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if process.returncode != 0:
        tail = process.stderr[-2000:]
        raise SystemExit(f"benchmarks.population: {n_users:,} users failed ({process.returncode}):\n{tail}")
    record = json.loads((out_dir / "record.json").read_text())
    timing, curve = record["timing"], record["curve"]
    return {
        "users": n_users,
        "messages": record["data"]["n_messages"],
        "clients": sum(p["clients"] for p in curve) / len(curve),
        "data_seconds": timing["data_seconds"],
        "round_seconds": timing["round_seconds"],
        "peak_gb": timing["peak_rss_mb"] / 1024,  # the run's own getrusage, when it writes its record
        "top5": record["metrics"]["top5"],
    }


def main(argv: list[str] | None = None) -> None:
    populations = [int(a) for a in (argv if argv is not None else sys.argv[1:])] or list(POPULATIONS)
    table = Table(title=f"Federated DP-FedAvg (ε = 4) by population: {ROUNDS} rounds, ~2,000 clients a round")
    for column in ("users", "messages", "clients/round", "corpus build s", "s/round", "peak RSS GB", "top-5"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n_users in populations:
            row = run_population(n_users, Path(tmp) / str(n_users))
            table.add_row(
                f"{row['users']:,}",
                f"{row['messages']:,}",
                f"{row['clients']:,.0f}",
                f"{row['data_seconds']:.1f}",
                f"{row['round_seconds']:.2f}",
                f"{row['peak_gb']:.2f}",
                f"{row['top5']:.3f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
