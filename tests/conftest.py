"""Shared fixtures: tiny Hydra-composed configs (Hydra's compose API, as in lightning-hydra-template)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Runs in tests (in-process and subprocesses, which inherit the environment) keep their privacy
# ledger out of the repository's outputs/: one ledger per test session.
os.environ["SANDBOX_LEDGER"] = str(Path(tempfile.mkdtemp(prefix="sandbox-ledger-")) / "privacy_ledger.json")

# A corpus and training budget small enough for a test to run in seconds.
TINY = [
    "data.n_users=300", "data.n_workspaces=12", "data.n_canaries=3", "data.n_fresh_canaries=5",
    "data.max_messages_per_user=200",
    "train.epochs=1", "train.batch_size=128", "task.n_buckets=4096", "task.embedding_dim=16",
    "task.hidden_dim=16", "progress=false",
]


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
