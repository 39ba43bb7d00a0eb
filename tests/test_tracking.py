"""Optional tracking: the record's numbers reach TensorBoard; a missing backend stops the run before it writes."""

from __future__ import annotations

import importlib.util

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sandbox.config import ConfigError, resolve
from sandbox.tracking import TrackingError, check_backend, flatten, scalars
from tests.conftest import TINY, compose_config, run_in


def _run(out_dir, overrides):
    return run_in(out_dir, [*TINY, "privacy=none", *overrides])


def test_tensorboard_receives_the_records_curve_and_final_metrics(tmp_path):
    record = _run(tmp_path / "run", ["tracking.backend=tensorboard", "train.epochs=2"])
    log_dir = tmp_path / "run" / "tensorboard"
    assert record["tracking"] == str(log_dir) and any(log_dir.iterdir())
    events = EventAccumulator(str(log_dir))
    events.Reload()
    top5 = [(e.step, e.value) for e in events.Scalars("curve/top5")]
    assert top5 == [(p["step"], pytest.approx(p["top5"])) for p in record["curve"]]
    (final,) = events.Scalars("final/top5")
    assert final.value == pytest.approx(record["metrics"]["top5"])


def test_a_missing_backend_package_stops_the_run_before_anything_is_written(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(TrackingError, match="pip install mlflow"):
        _run(tmp_path / "run", ["tracking.backend=mlflow"])
    assert not (tmp_path / "run" / "record.json").exists() and not (tmp_path / "run" / "model.pt").exists()


def test_bad_backend_names_the_key():
    with pytest.raises(ConfigError, match=r"tracking\.backend"):
        resolve(compose_config([*TINY, "tracking.backend=wandb"]))
    with pytest.raises(TrackingError, match="tracking.backend"):
        check_backend("wandb")


def test_flatten_and_scalars_on_a_hand_made_record():
    assert flatten({"a": {"b": 1, "c": None}, "d": [1, 2], "e": "x"}) == {
        "a.b": 1,
        "a.c": "None",
        "d": "[1, 2]",
        "e": "x",
    }
    record = {
        "curve": [
            {"round": 1, "clients": 3, "epsilon": 0.5, "train_loss": 2.0, "clip_norm": None},
            {"round": 2, "clients": 4, "epsilon": 0.7, "train_loss": 1.5, "top5": 0.4},
        ],
        "metrics": {"top5": 0.41, "split": "held-out users", "ranking": {"held_out_users": {"recall@10": 0.1}}},
        "privacy": {"epsilon": 0.7},
        "audit": {"membership": {"auc": 0.52}},
    }
    got = scalars(record)
    assert ("curve/epsilon", 2, 0.7) in got and ("curve/top5", 2, 0.4) in got
    assert not any(tag == "curve/clip_norm" for tag, _, _ in got)  # None is not a number
    assert ("final/top5", 2, 0.41) in got and ("final/held_out_users/recall@10", 2, 0.1) in got
    assert ("final/epsilon", 2, 0.7) in got and ("audit/membership_auc", 2, 0.52) in got


def test_scalars_take_the_typed_record_and_refuse_a_wrong_type():
    from sandbox.record import RecordError, RunRecord

    record = {"curve": [{"step": 1, "epsilon": 0.5, "top5": 0.3}], "metrics": {"top1": 0.2, "top5": 0.31}}
    assert scalars(RunRecord.from_json(record, partial=True)) == scalars(record)
    with pytest.raises(RecordError, match=r"curve\[0\]\.step: expected a whole number"):
        scalars({"curve": [{"step": "one"}]})
