"""A re-run into a run directory never leaves an earlier run's record beside its own model."""

from __future__ import annotations

import json

import pytest
import torch

from sandbox.config import ConfigError
from sandbox.record import model_fingerprint
from tests.conftest import TINY, run_in


def _run(out, overrides):
    return run_in(out, [*TINY, *overrides])


def test_a_rerun_that_fails_after_writing_its_model_removes_the_old_record(tmp_path, monkeypatch):
    import sandbox.run

    first = _run(tmp_path, ["privacy=none"])
    (tmp_path / "claim_cannot-memorize.json").write_text("{}")  # a verdict judged on the first model
    assert (tmp_path / "record.json").exists()

    def audit_fails(*args, **kwargs):  # e.g. a shadow model that diverges (every config error comes before)
        raise ConfigError("shadow model 0 (trained on half of the users): training diverged")

    monkeypatch.setattr(sandbox.run, "audit_outcome", audit_fails)
    # another model, then a failure after training, in its audit
    with pytest.raises(ConfigError, match="shadow model 0"):
        _run(tmp_path, ["privacy=none", "seed=5", "audit=loss"])
    model = torch.load(tmp_path / "model.pt")
    assert model_fingerprint(model) != first["model"]["sha256"]  # model.pt is the second run's
    assert not (tmp_path / "record.json").exists() and not list(tmp_path.glob("claim_*.json"))


def test_a_rerun_that_fails_before_writing_leaves_the_earlier_run_whole(tmp_path):
    _run(tmp_path, ["privacy=none"])
    with pytest.raises(ConfigError):
        _run(tmp_path, ["privacy=none", "data.n_users=1"])  # refused while preparing the data
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["model"]["sha256"] == model_fingerprint(torch.load(tmp_path / "model.pt"))
