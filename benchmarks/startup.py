"""`make bench`: how long the command line takes to answer before any training (issue: fast start).

Each command runs in a fresh process, alternated over REPEATS rounds; the medians are printed with
Hydra's own ``--hydra-help`` and a bare ``import torch`` beside them as the machine's yardsticks
(machines here are shared and noisy: read the ratios, and the absolute seconds against the 3 s goal).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

REPEATS = 5
COMMANDS = {
    "python -m sandbox --help": [sys.executable, "-m", "sandbox", "--help"],
    "python -m sandbox --cfg job": [sys.executable, "-m", "sandbox", "--cfg", "job"],
    "a mistyped key (train.lrr=1)": [sys.executable, "-m", "sandbox", "train.lrr=1"],
    "a bad value (privacy.delta=2)": [sys.executable, "-m", "sandbox", "privacy.delta=2"],
    "Hydra's own --hydra-help": [sys.executable, "-m", "sandbox", "--hydra-help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'import opacus'": [sys.executable, "-c", "import opacus"],
}


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(REPEATS):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -m sandbox --help"])
    print(f"start-up, median of {REPEATS} fresh processes each (alternated):")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:<32} {med:6.2f} s  ({med / base:4.2f}× --help)")


if __name__ == "__main__":
    main()
