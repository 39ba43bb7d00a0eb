"""`python -m sandbox.compare SWEEP_DIR`: the ε / utility / attack frontier of a sweep.

Writes ``frontier.md``, ``frontier.csv``, ``frontier_utility.png`` and ``frontier_attack.png``
into SWEEP_DIR and prints the table. Exit 0 on success; bad input (no such directory, no
completed run record, an unwritable directory) prints ``error: …`` naming the path on
stderr, exits 2, and writes nothing. All four files are rendered first, then each is moved
into place by an atomic rename.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from sandbox.compare.frontier import (ATTACK_METRICS, CompareError, Frontier, markdown_table, read_frontier,
                                      skipped_text, to_csv, to_markdown)

EXIT_BAD_INPUT = 2
OUTPUTS = {"md": "frontier.md", "csv": "frontier.csv", "utility": "frontier_utility.png",
           "attack": "frontier_attack.png"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # our format: `error: …`, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def render(sweep_dir: Path, *, attack_metric: str = "auc") -> tuple[Frontier, dict[str, bytes]]:
    """Read the sweep and render every output in memory: (frontier, {file name: bytes})."""
    from sandbox.compare.plots import attack_png, utility_png  # matplotlib only when there is something to draw

    frontier = read_frontier(sweep_dir, attack_metric=attack_metric)
    plots = {"ε vs utility": OUTPUTS["utility"], "ε vs attack success": OUTPUTS["attack"]}
    files = {OUTPUTS["md"]: to_markdown(frontier, plots=plots).encode("utf-8"),
             OUTPUTS["csv"]: to_csv(frontier).encode("utf-8"),
             OUTPUTS["utility"]: utility_png(frontier), OUTPUTS["attack"]: attack_png(frontier)}
    return frontier, files


def write_all(directory: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file to a temporary name first, then rename each into place (atomic per file)."""
    staged: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for name, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            staged.append((name, Path(tmp)))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make the results private to this user
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for name, tmp in staged:
            os.replace(tmp, directory / name)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
    return [directory / name for name in files]


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m sandbox.compare", description=(
        "Compare the runs of a sweep (every record.json under SWEEP_DIR, Hydra multiruns included): "
        "ε against utility and attack success, Pareto-optimal runs per task."))
    parser.add_argument("sweep_dir", help="a Hydra multirun directory (or a directory holding several)")
    parser.add_argument("--attack-metric", choices=sorted(ATTACK_METRICS), default="auc",
                        help="attack success for the Pareto flag: membership AUC (default) or TPR at 1%% FPR")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    try:
        frontier, files = render(sweep_dir, attack_metric=args.attack_metric)
        written = write_all(sweep_dir, files)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {sweep_dir}: cannot write the frontier files: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(markdown_table(frontier))
    if frontier.notes:
        print("\nnotes:\n" + "\n".join(f"- {n}" for n in frontier.notes))
    if frontier.skipped:
        print(f"\nskipped ({len(frontier.skipped)}):\n{skipped_text(frontier)}")
    print("\nwritten: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
