"""The Deployment Engine end to end: `scripts/flower-deploy` (SuperLink + one SuperNode per client on
127.0.0.1, `flwr run .`) writes a complete record and the same model as the in-process engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sandbox.config import resolve
from sandbox.run import run
from tests.conftest import compose_config

# e2e: a SuperLink and SuperNodes in subprocesses; the timeout tolerates a loaded machine (measured ~1 min idle)
pytestmark = [pytest.mark.deployment, pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "flower-deploy"
# `make deploy`'s config: 3 consenting workspaces = 3 clients = 3 SuperNodes, each in every round.
CROSS_SILO = [
    "mode=federated",
    "federation=cross_silo",
    "data.n_workspaces=3",
    "data.n_users=60",
    "data.workspace_opt_out_rate=0",
    "federation.rounds=2",
    "federation.sample_rate=1.0",
    "privacy=dpfedavg",
    "privacy.noise_multiplier=1.0",
    "privacy.target_epsilon=null",
    "privacy.noise_source=seeded",
]  # one model on both engines needs one noise draw (research mode)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deployment")
    out_dir = root / "run"
    # TMPDIR: the script's work dir (FLWR_HOME, logs) lands under pytest's tmp too
    env = {**os.environ, "OUT_DIR": str(out_dir), "PYTHON": sys.executable, "TMPDIR": str(root)}
    proc = subprocess.run([str(SCRIPT), *CROSS_SILO], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "finished:completed" in proc.stderr
    return out_dir


def test_deployment_writes_a_complete_private_record(deployed):
    record = json.loads((deployed / "record.json").read_text())
    assert record["engine"] == "deployment" and record["status"] == "completed"
    assert record["config"]["federation"]["engine"] == "deployment"
    assert record["data"]["n_clients"] == 3 and record["data"]["client_unit"] == "workspace"
    p = record["privacy"]
    assert (p["mechanism"], p["unit"], p["sampling"], p["steps"]) == ("dpfedavg", "workspace", "poisson", 2)
    assert p["noise_multiplier"] == 1.0 and p["sample_rate"] == 1.0 and p["epsilon"] > 0
    assert [point["clients"] for point in record["curve"]] == [3, 3]
    assert (deployed / "model.pt").exists() and (deployed / "canaries.json").exists()


def test_deployment_gives_the_inprocess_model(deployed, tmp_path):
    hydra_cfg = compose_config([*CROSS_SILO, "federation.engine=inprocess"])
    run(resolve(hydra_cfg), out_dir=tmp_path, resolved_config=OmegaConf.to_container(hydra_cfg, resolve=True))
    a, b = torch.load(tmp_path / "model.pt"), torch.load(deployed / "model.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
