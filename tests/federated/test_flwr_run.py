"""`flwr run .` the Flower way (sandbox/app.py): the typed run config, SuperNodes against clients, and a
run with the shipped defaults on a local simulation federation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox.federated.flower_server as fs
from sandbox.app import RUN_CONFIG_DEFAULTS, out_dir_of, run_overrides
from sandbox.config import ConfigError
from sandbox.federated.flower_messages import partition_content

REPO = Path(__file__).resolve().parents[2]


def test_the_pyproject_run_config_is_the_apps_defaults():
    import tomllib

    shipped = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert shipped == RUN_CONFIG_DEFAULTS


def test_typed_keys_become_overrides_and_the_overrides_win():
    assert run_overrides({}) == [
        "task=emoji",
        "mode=federated",
        "federation=cross_silo",
        "privacy=dpfedavg",
        "data.n_workspaces=2",
        "data.n_users=100",
        "federation.rounds=3",
        "progress=false",
        "privacy.target_epsilon=8.0",
    ]
    got = run_overrides({"clients": "user", "privacy": "none", "overrides": "federation.rounds=9 seed=3"})
    assert "federation=cross_device" in got and "privacy=none" in got
    assert not any(o.startswith("privacy.target_epsilon") for o in got)  # not private: no ε
    assert got[-2:] == ["federation.rounds=9", "seed=3"] and "federation.rounds=3" not in got
    sigma = run_overrides({"overrides": "privacy.noise_multiplier=1.0 privacy.target_epsilon=null"})
    assert "privacy.target_epsilon=8.0" not in sigma  # σ given: ε is computed, not targeted
    with pytest.raises(ConfigError, match="run config rounds-per-client: unknown key"):
        run_overrides({"rounds-per-client": 2})
    with pytest.raises(ConfigError, match="run config clients"):
        run_overrides({"clients": "device"})


def test_out_dir_defaults_under_flwr_home_and_must_be_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    assert out_dir_of({}, 42) == tmp_path / "sandbox-runs" / "42"
    assert out_dir_of({"out-dir": str(tmp_path / "x")}, 42) == tmp_path / "x"
    with pytest.raises(ConfigError, match="out-dir must be an absolute directory"):
        out_dir_of({"out-dir": "relative/dir"}, 42)


class _Grid:
    def __init__(self, partitions):
        self.partitions = partitions  # node id → partition id

    def get_node_ids(self):
        return list(self.partitions)


def test_supernodes_beyond_the_clients_stay_idle_and_too_few_is_a_clear_error(monkeypatch):
    class _Message:  # a query as discover_client_nodes builds it (a real Message needs a run context)
        def __init__(self, content, *, dst_node_id, **_):
            self.content, self.metadata = content, type("Metadata", (), {"dst_node_id": dst_node_id})()

    monkeypatch.setattr(fs, "Message", _Message)
    monkeypatch.setattr(
        fs,
        "exchange",
        lambda grid, messages, what: {
            m.metadata.dst_node_id: _Reply(grid.partitions[m.metadata.dst_node_id]) for m in messages
        },
    )
    grid = _Grid({101: 0, 102: 1, 103: 2, 104: 3, 105: 4})  # 5 simulated SuperNodes, a 2-client run
    assert fs.discover_client_nodes(grid, n_clients=2, wait_seconds=0) == {0: 101, 1: 102}
    with pytest.raises(RuntimeError, match=r"num-supernodes=3"):
        fs.discover_client_nodes(_Grid({101: 0, 102: 1}), n_clients=3, wait_seconds=0)
    with pytest.raises(RuntimeError, match="needs partition ids 0..1"):
        fs.discover_client_nodes(_Grid({101: 0, 102: 5}), n_clients=2, wait_seconds=0)


class _Reply:
    def __init__(self, partition):
        self.content = partition_content(partition)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.deployment
@pytest.mark.e2e
def test_flwr_run_with_the_shipped_defaults_on_a_local_simulation_federation(tmp_path):
    """`flwr run . local --stream`, nothing else: the default local simulation federation (2 SuperNodes), the
    shipped run config (2 workspaces, 3 rounds, DP-FedAvg at ε = 8), the record under $FLWR_HOME."""
    home = tmp_path / "flwr_home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # the venv has everything (docs/federated.md)
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
    }
    try:
        proc = subprocess.run(
            [str(bin_dir / "flwr"), "run", ".", "local", "--stream"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        records = list((home / "sandbox-runs").glob("*/record.json"))
        assert len(records) == 1, proc.stdout[-3000:]
        record = json.loads(records[0].read_text())
        assert record["engine"] == "deployment" and record["status"] == "completed" and record["mode"] == "federated"
        assert record["privacy"]["epsilon"] == pytest.approx(8.0, abs=0.01) and record["privacy"]["steps"] == 3
        assert record["privacy"]["unit"] == "workspace" and (records[0].parent / "model.pt").is_file()
    finally:  # the managed local SuperLink is detached: stop it (and its SuperExec) by this test's FLWR_HOME
        out = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
        for pid in map(int, out):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(home, ignore_errors=True)
