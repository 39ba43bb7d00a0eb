"""`python -m sandbox.compare SWEEP_DIR`: the ε / utility / attack frontier of a sweep.

Writes ``frontier.md``, ``frontier.csv``, ``frontier_utility.png`` and ``frontier_attack.png``
into SWEEP_DIR and prints the table. Exit 0 on success; bad input (no such directory, no
completed run record, an unwritable directory) prints ``error: …`` naming the path on
stderr, exits 3 (``sandbox.cli``), and writes nothing. All four files are rendered first, then
each is written atomically (``sandbox.io``); a failed write removes the ones written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.cli import Exit, fail, run_main
from sandbox.compare.frontier import (
    ATTACK_METRICS,
    CompareError,
    Frontier,
    markdown_table,
    read_frontier,
    skipped_text,
    to_csv,
    to_markdown,
)
from sandbox.io import write_bytes

EXIT_BAD_INPUT = int(Exit.BAD_INPUT)
OUTPUTS = {
    "md": "frontier.md",
    "csv": "frontier.csv",
    "utility": "frontier_utility.png",
    "attack": "frontier_attack.png",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # our format: `error: …`, exit 3 (bad input)
        self.print_usage(sys.stderr)
        sys.exit(fail(message, Exit.BAD_INPUT))


def render(sweep_dir: Path, *, attack_metric: str = "auc") -> tuple[Frontier, dict[str, bytes]]:
    """Read the sweep and render every output in memory: (frontier, {file name: bytes})."""
    from sandbox.compare.plots import attack_png, utility_png  # matplotlib only when there is something to draw

    frontier = read_frontier(sweep_dir, attack_metric=attack_metric)
    plots = {"ε vs utility": OUTPUTS["utility"], "ε vs attack success": OUTPUTS["attack"]}
    files = {
        OUTPUTS["md"]: to_markdown(frontier, plots=plots).encode("utf-8"),
        OUTPUTS["csv"]: to_csv(frontier).encode("utf-8"),
        OUTPUTS["utility"]: utility_png(frontier),
        OUTPUTS["attack"]: attack_png(frontier),
    }
    return frontier, files


def write_all(directory: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file atomically (``sandbox.io.write_bytes``); if one fails, remove those written."""
    written: list[Path] = []
    try:
        for name, data in files.items():
            write_bytes(directory / name, data)
            written.append(directory / name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m sandbox.compare",
        description=(
            "Compare the runs of a sweep (every record.json under SWEEP_DIR, Hydra multiruns included): "
            "ε against utility and attack success, Pareto-optimal runs per task."
        ),
    )
    parser.add_argument("sweep_dir", help="a Hydra multirun directory (or a directory holding several)")
    parser.add_argument(
        "--attack-metric",
        choices=sorted(ATTACK_METRICS),
        default="auc",
        help="attack success for the Pareto flag: membership AUC (default) or TPR at 1%% FPR",
    )
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    try:
        frontier, files = render(sweep_dir, attack_metric=args.attack_metric)
        written = write_all(sweep_dir, files)
    except CompareError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{sweep_dir}: cannot write the frontier files: {exc}")
    print(markdown_table(frontier))
    if frontier.notes:
        print("\nnotes:\n" + "\n".join(f"- {n}" for n in frontier.notes))
    if frontier.skipped:
        print(f"\nskipped ({len(frontier.skipped)}):\n{skipped_text(frontier)}")
    print("\nwritten: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    run_main(main)
