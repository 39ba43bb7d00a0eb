"""The README's "Your own data" walk-through, end to end on a tiny corpus, through the command lines a
newcomer types: validate → plant canaries → federated DP training with the canary audit → a LiRA
re-audit of the same model → the claim → the report → suggestions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SMALL_MODEL = ["task.n_buckets=4096", "task.embedding_dim=16", "task.hidden_dim=16", "progress=false"]


def _cli(*args, cwd, ok=(0,)):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode in ok, f"{args}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.e2e
def test_your_own_data_walk_through(tmp_path):
    w = tmp_path
    _cli(
        "sandbox.data",
        "generate",
        "--out",
        "mine",
        "--format",
        "csv",
        "--n-users",
        "300",
        "--n-workspaces",
        "12",
        cwd=w,
    )
    (w / "mine" / "canaries.json").unlink()  # a team's own corpus has none
    assert "yield no token" in _cli("sandbox.data", "validate", "mine", cwd=w).stdout
    _cli("sandbox.data", "plant", "mine", "planted", "--canaries", "12", "--repeats", "4", "--fresh", "100", cwd=w)
    train = [
        "data=files",
        "data.path=planted",
        "data.manifest=planted.canaries.json",
        "mode=federated",
        "federation.rounds=5",
        "federation.sample_rate=0.5",
        "privacy=dpfedavg",
        "privacy.target_epsilon=1",
        "privacy.delta=1e-4",
        "audit=canary",
        "audit.resamples=200",
        "hydra.run.dir=run",
        "ledger.path=ledger.json",
        *SMALL_MODEL,
    ]
    _cli("sandbox", *train, cwd=w, ok=(0, 1, 2))
    record = json.loads((w / "run" / "record.json").read_text())
    assert record["audit"]["attack"] == "canary" and record["audit"]["n_members"] > 0
    assert record["privacy"]["epsilon"] <= 1.0 and record["privacy"]["unit"] == "user"
    _cli("sandbox.audit", "run", "audit=lira", "audit.shadows=4", "audit.resamples=200", cwd=w, ok=(0, 1, 2))
    assert (w / "run" / "audits" / "lira" / "record.json").is_file()
    claim = _cli("sandbox.claim", "cannot-memorize", "run", cwd=w, ok=(0, 1, 2))
    assert "verdict:" in claim.stdout and "canary exposure" in claim.stdout and "membership TPR" in claim.stdout
    _cli("sandbox.report", "run", cwd=w)
    md = (w / "run" / "report.md").read_text()
    assert (w / "run" / "report.html").is_file() and (w / "run" / "report_lira_roc.png").is_file()
    # the claim first, then the run, its canary audit and the LiRA re-audit of the same model
    assert (
        md.index("## Claims")
        < md.index("## The run")
        < md.index("## Audit")
        < md.index("## Re-audit of this model: lira")
    )
    assert "re-audit lira (lira):" in md.split("\n\n")[1]
    out = _cli("sandbox.suggest", "run", "congrats on shipping the release", "--k", "3", cwd=w).stdout
    assert out.startswith("'congrats on shipping the release': ") and len(out.split("  ")) == 3
