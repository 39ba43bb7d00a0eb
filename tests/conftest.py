"""Shared fixtures: tiny Hydra-composed configs (Hydra's compose API, as in lightning-hydra-template)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sandbox.config import explain
from sandbox.config.store import CONF_DIR, register  # noqa: F401  (CONF_DIR: sandbox/conf, package data)

# Runs in tests (in-process and subprocesses, which inherit the environment) keep their privacy
# ledger out of the repository's outputs/: one ledger per test session.
os.environ["SANDBOX_LEDGER"] = str(Path(tempfile.mkdtemp(prefix="sandbox-ledger-")) / "privacy_ledger.json")

# A corpus and training budget small enough for a test to run in seconds.
TINY = [
    "data.n_users=300",
    "data.n_workspaces=12",
    "data.n_canaries=3",
    "data.n_fresh_canaries=5",
    "data.max_messages_per_user=200",
    "train.epochs=1",
    "train.batch_size=128",
    "task.n_buckets=4096",
    "task.embedding_dim=16",
    "task.hidden_dim=16",
    "progress=false",
]


def compose_config(overrides: list[str]):
    """The config ``python -m sandbox OVERRIDES`` runs; a refused composition raises ``ConfigError``
    naming the key (as the CLI prints it), like ``sandbox.config.resolve``."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            return compose(config_name="config", overrides=overrides)
        except (HydraException, OmegaConfBaseException) as exc:
            raise explain(exc) from None


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def run_in(out_dir: Path, overrides: list[str]) -> dict:
    """Compose ``overrides`` (Hydra's compose API), resolve, and run once into ``out_dir`` (created): the
    record. The one way tests train a run; files add their own overrides (TINY, a federation) in front."""
    from sandbox.config import plain, resolve  # noqa: PLC0415  (conftest stays importable without torch)
    from sandbox.run import run  # noqa: PLC0415

    cfg = compose_config(list(overrides))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return run(resolve(cfg), out_dir=out_dir, resolved_config=plain(cfg))


@pytest.fixture
def train_run():
    """``run_in`` as a fixture: ``train_run(tmp_path / "name", [*TINY, ...])`` → the record."""
    return run_in
