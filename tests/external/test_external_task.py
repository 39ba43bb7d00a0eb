"""A task defined outside sandbox/ trains (central and federated), is audited and gets a claim verdict,
without a line of sandbox/ knowing it (``task._target_``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.claim import check_claim
from sandbox.config import ConfigError, resolve
from tests.conftest import TINY, compose_config, run_in
from tests.external.length_task import CLASSES, LengthTask

ROOT = Path(__file__).resolve().parents[2]
TASK = [
    "task=emoji",
    "~task",
    "+task._target_=tests.external.length_task.LengthTask",
    "+task.name=length",
    "+task.n_buckets=4096",
    "+task.embedding_dim=16",
    "+task.hidden_dim=16",
]
# TINY sets task.* keys of the emoji task; the external task takes them from its own node
BASE = [o for o in TINY if not o.startswith("task.")]


def _run(tmp_path, name, overrides):
    return run_in(tmp_path / name, [*BASE, *TASK, *overrides]), tmp_path / name


def test_the_task_is_built_from_its_target():
    cfg = resolve(compose_config([*BASE, *TASK]))
    assert isinstance(cfg.task, LengthTask) and cfg.task.name == "length" and cfg.task.n_buckets == 4096


def test_an_unknown_key_of_the_external_task_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"task\.nope: unknown key"):
        resolve(compose_config([*BASE, *TASK, "+task.nope=1"]))


def test_a_target_that_cannot_be_imported_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"task\._target_: cannot import 'tests\.external\.nosuch\.Task'"):
        resolve(compose_config([*BASE, "~task", "+task._target_=tests.external.nosuch.Task"]))


def test_central_training_and_a_loss_audit_of_the_external_task(tmp_path):
    record, out = _run(tmp_path, "central", ["privacy=none", "audit=loss", "audit.resamples=100"])
    assert record["task"] == "length" and record["status"] == "completed"
    assert set(record["metrics"]) >= {"top1", "baseline"} and record["data"]["n_classes"] <= len(CLASSES)
    assert record["metrics"]["top1"] > record["metrics"]["baseline"]["top1"]  # lengths are learnable from words
    assert record["audit"]["attack"] == "loss" and 0.0 <= record["audit"]["auc"] <= 1.0
    assert (out / "model.pt").is_file()


def test_federated_dp_training_of_the_external_task(tmp_path):
    record, _ = _run(
        tmp_path,
        "federated",
        [
            "mode=federated",
            "privacy=dpfedavg",
            "privacy.noise_multiplier=1.0",
            "privacy.target_epsilon=null",
            "federation.rounds=2",
        ],
    )
    assert record["task"] == "length" and record["mode"] == "federated"
    assert record["privacy"]["unit"] == "user" and record["privacy"]["epsilon"] > 0


@pytest.mark.e2e
def test_a_canary_audit_and_a_claim_verdict_on_the_external_task(tmp_path):
    """The canary audit scores each planted canary with the task's own label (``canary_label``), and the
    claim checker gives a verdict on the records; the CLI exits with the verdict's code."""
    record, out = _run(
        tmp_path,
        "canary",
        ["privacy=none", "audit=canary", "audit.resamples=100", "audit.extraction=false", "data.n_canaries=20"],
    )
    canaries = record["audit"]["canaries"]
    assert canaries["planted"] > 0 and canaries["fresh"] == 5
    verdict = check_claim("cannot-memorize", [out])
    assert verdict.verdict in ("PASS", "FAIL", "INCONCLUSIVE")
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.claim", "cannot-memorize", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 2}[verdict.verdict], proc.stderr
    assert json.loads((out / "record.json").read_text())["audit"]["attack"] == "canary"
