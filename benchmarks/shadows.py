"""`make bench`: 16 LiRA shadow models of the default config, against the 572 s measured before fastdp.

Runs ``python -m sandbox audit=lira audit.control=false`` (the default config: emoji, central DP-SGD
at ε = 8, 16 shadows on random halves of the users, ``audit.workers`` = 2 single-threaded processes)
in its own process and reads the shadows' wall time from its record (``audit.timing.shadows_seconds``).
Issue 17 measured 572 s for the same 16 shadows before central DP-SGD's per-example norms moved to
``sandbox.train.fastdp`` (Opacus ghost clipping until then); the ratio is against that figure, so it
is not side by side (the old path is gone) and is read on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE_SECONDS = 572.0  # issue 17, docs/audits.md ("Cost"): 16 shadows of the default config, Opacus ghost clipping


def shadow_seconds(out_dir: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "audit=lira",
        "audit.control=false",
        f"ledger.path={out_dir / 'ledger.json'}",
        f"hydra.run.dir={out_dir}",
    ]
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if process.returncode not in (0, 1, 2):  # a verdict is a result; 3+ is a failure
        raise SystemExit(f"benchmarks.shadows: the LiRA run failed ({process.returncode}):\n{process.stderr[-2000:]}")
    return json.loads((out_dir / "record.json").read_text())["audit"]["timing"]["shadows_seconds"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        seconds = shadow_seconds(Path(tmp))
    print(
        f"16 LiRA shadows of the default config (central DP-SGD ε = 8, 2 workers): {seconds:.0f} s "
        f"(before fastdp: {BEFORE_SECONDS:.0f} s, {BEFORE_SECONDS / seconds:.1f}× faster)"
    )


if __name__ == "__main__":
    main()
