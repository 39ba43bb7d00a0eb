"""A run is reproducible from its recorded seed and config; another seed gives another run."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from sandbox.config import resolve
from sandbox.run import run
from tests.conftest import TINY, compose_config


def _run(tmp_path, name: str, overrides: list[str]):
    cfg = compose_config([*TINY, *overrides])
    out = tmp_path / name
    out.mkdir()
    record = run(resolve(cfg), out_dir=out, resolved_config=OmegaConf.to_container(cfg, resolve=True))
    return record, torch.load(out / "model.pt")


# privacy=dpsgd with seeded noise: only a replayable noise stream gives the same DP model twice
# (secure noise, the default, differs by design: tests/privacy/test_noise_source.py)
@pytest.mark.parametrize("privacy", ["privacy=none", "privacy=dpsgd privacy.noise_source=seeded"])
def test_same_seed_same_model_other_seed_other_model(tmp_path, privacy):
    privacy = privacy.split()
    a, state_a = _run(tmp_path, "a", [*privacy, "seed=7"])
    b, state_b = _run(tmp_path, "b", [*privacy, "seed=7"])
    c, state_c = _run(tmp_path, "c", [*privacy, "seed=8"])
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    assert a["metrics"] == b["metrics"] and a["privacy"] == b["privacy"]
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_record_replays_from_its_own_config(tmp_path):
    """The resolved config stored in record.json is enough to rerun the same model (with seeded noise:
    secure noise is never recorded, so a secure DP run cannot be replayed, by design)."""
    first, state = _run(tmp_path, "first", ["privacy=dpsgd", "privacy.target_epsilon=2", "privacy.noise_source=seeded"])
    stored = OmegaConf.create(json.loads((tmp_path / "first" / "record.json").read_text())["config"])
    again = tmp_path / "again"
    again.mkdir()
    second = run(resolve(stored), out_dir=again, resolved_config=first["config"])
    assert second["privacy"]["epsilon"] == first["privacy"]["epsilon"]
    replayed = torch.load(again / "model.pt")
    assert all(torch.equal(state[k], replayed[k]) for k in state)


def test_corpus_fingerprint_is_recorded_and_tracks_the_data_seed(tmp_path):
    a, _ = _run(tmp_path, "a", ["privacy=none"])
    b, _ = _run(tmp_path, "b", ["privacy=none", "data.seed=1"])
    assert len(a["data"]["fingerprint"]) == 64
    assert a["data"]["fingerprint"] != b["data"]["fingerprint"]
    assert a["data"]["n_opted_out_users"] > 0
