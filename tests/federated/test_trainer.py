"""Federated runs end to end (in-process engine) on a tiny corpus: record, accounting, stop rule, consent."""

from __future__ import annotations

import pytest
import torch

from sandbox.config import ConfigError, resolve
from sandbox.federated.clients import partition_clients
from sandbox.prepare import Seeds, prepare
from tests.conftest import TINY, compose_config, run_in
from tests.test_cli import independent_rdp_epsilon

FED = [*TINY, "mode=federated", "federation.sample_rate=0.2", "federation.eval_every=2"]


def _run(tmp_path, overrides):
    return run_in(tmp_path, [*FED, *overrides])


def test_dp_fedavg_record_states_user_level_poisson_and_honest_epsilon(tmp_path):
    record = _run(
        tmp_path,
        ["privacy=dpfedavg", "privacy.noise_multiplier=1.2", "privacy.target_epsilon=null", "federation.rounds=4"],
    )
    p = record["privacy"]
    assert record["mode"] == "federated" and record["engine"] == "inprocess"
    assert p["unit"] == "user" and p["sampling"] == "poisson" and p["steps"] == 4
    assert p["sample_rate"] == 0.2 and p["neighbouring_relation"] == "add/remove one user"
    assert p["delta"] < 1 / record["data"]["n_clients"]
    assert p["epsilon"] == pytest.approx(independent_rdp_epsilon(p), rel=1e-3)
    curve = record["curve"]
    assert [c["round"] for c in curve] == [1, 2, 3, 4]
    assert all({"epsilon", "clients", "clip_norm"} <= set(c) for c in curve)
    assert "top5" in curve[1] and "top5" in curve[3] and "top5" not in curve[0]
    assert curve[0]["epsilon"] < curve[-1]["epsilon"] == pytest.approx(p["epsilon"])
    assert (tmp_path / "model.pt").exists()


def test_target_epsilon_with_given_noise_stops_before_exceeding(tmp_path):
    record = _run(
        tmp_path,
        ["privacy=dpfedavg", "privacy.noise_multiplier=1.0", "privacy.target_epsilon=3", "federation.rounds=500"],
    )
    assert record["status"] == "stopped_budget"
    assert record["privacy"]["epsilon"] <= 3.0 and 0 < record["privacy"]["steps"] < 500
    assert "top5" in record["curve"][-1]  # evaluated where it stopped


def test_target_epsilon_alone_calibrates_noise_for_the_planned_rounds(tmp_path):
    record = _run(tmp_path, ["privacy=dpfedavg", "privacy.target_epsilon=2", "federation.rounds=5"])
    assert record["status"] == "completed" and record["privacy"]["steps"] == 5
    assert 1.9 < record["privacy"]["epsilon"] <= 2.0


def test_a_budget_too_small_for_one_round_trains_nothing_and_says_so(tmp_path):
    record = _run(
        tmp_path,
        ["privacy=dpfedavg", "privacy.noise_multiplier=0.3", "privacy.target_epsilon=0.5", "federation.rounds=5"],
    )
    assert record["status"] == "stopped_budget" and record["privacy"]["steps"] == 0
    assert record["privacy"]["epsilon"] == 0.0 and record["curve"][0]["round"] == 0


def test_cross_silo_clients_are_workspaces(tmp_path):
    record = _run(
        tmp_path,
        [
            "federation=cross_silo",
            "privacy=dpfedavg",
            "privacy.target_epsilon=5",
            "federation.rounds=2",
            "federation.sample_rate=0.5",
        ],
    )
    assert record["privacy"]["unit"] == "workspace"
    assert record["data"]["client_unit"] == "workspace"
    assert record["data"]["n_clients"] <= record["data"]["n_workspaces"]


def test_fedavg_learns_something_nonprivate(tmp_path):
    record = _run(tmp_path, ["privacy=none", "federation.rounds=6", "federation.sample_rate=0.5"])
    assert record["privacy"]["epsilon"] is None and record["privacy"]["steps"] == 6
    assert record["curve"][-1]["train_loss"] < record["curve"][0]["train_loss"]


# DP with seeded noise: the two trainers can give one model only if the server draws the same noise
@pytest.mark.parametrize(
    "privacy", [["privacy=none"], ["privacy=dpfedavg", "privacy.clipping=adaptive", "privacy.noise_source=seeded"]]
)
def test_client_batched_and_one_by_one_inprocess_runs_give_the_same_model(tmp_path, privacy):
    overrides = [*privacy, "federation.rounds=4", "federation.sample_rate=0.5", "federation.local_batch_size=4"]
    batched = _run(tmp_path / "batched", [*overrides, "federation.client_batch=3"])
    loop = _run(tmp_path / "loop", [*overrides, "federation.client_batch=0"])
    assert [p["clients"] for p in batched["curve"]] == [p["clients"] for p in loop["curve"]]
    assert [p["clip_norm"] for p in batched["curve"]] == pytest.approx([p["clip_norm"] for p in loop["curve"]])
    a, b = torch.load(tmp_path / "batched" / "model.pt"), torch.load(tmp_path / "loop" / "model.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_clients_are_only_consenting_training_users():
    cfg = resolve(compose_config([*FED, "privacy=none", "data.user_opt_out_rate=0.2"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    partition = partition_clients(data.corpus, data.train, unit="user")
    assert set(partition.owners) <= set(data.split.train_users)
    assert data.corpus.user_consented()[partition.owners].all()
    assert not set(partition.owners) & set(data.split.test_users)
    sizes = partition.sizes()
    assert sizes.sum() == len(data.train) and (sizes > 0).all()
    first = partition.data(0, data.train)
    rows = data.train.message_index[partition.rows[: sizes[0]]]
    assert (data.corpus.message_user[rows] == partition.owners[0]).all() and len(first) == sizes[0]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["privacy=dpsgd"], "privacy"),
        (["privacy=dpfedavg", "federation.sample_rate=1.5"], "federation.sample_rate"),
        (["privacy=dpfedavg", "privacy.unit=example"], "privacy.unit"),
        (["privacy=dpfedavg", "federation.server_optimizer=sgd"], "federation.server_optimizer"),
        (["privacy=none", "federation.client_batch=-1"], "federation.client_batch"),
    ],
)
def test_bad_federated_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve(compose_config([*FED, *overrides]))


def test_client_level_dpsgd_records_example_level_epsilon_of_the_busiest_client(tmp_path):
    record = _run(
        tmp_path,
        [
            "privacy=client_dpsgd",
            "privacy.noise_multiplier=1.5",
            "privacy.target_epsilon=null",
            "privacy.local_sample_rate=0.5",
            "federation.rounds=4",
        ],
    )
    p = record["privacy"]
    assert p["mechanism"] == "client_dpsgd" and p["unit"] == "example"
    assert p["neighbouring_relation"] == "add/remove one example" and not p["amplification_by_client_sampling"]
    assert p["local_steps_per_round"] == 2 and 1 <= p["worst_client_rounds"] <= 4 and p["rounds"] == 4
    assert p["steps"] == p["worst_client_rounds"] * 2 and p["sample_rate"] == 0.5
    assert p["epsilon"] == pytest.approx(independent_rdp_epsilon(p), rel=1e-3)
    assert len(record["curve"]) == 4


def test_client_level_dpsgd_target_is_met_even_by_a_client_in_every_round(tmp_path):
    record = _run(
        tmp_path,
        ["privacy=client_dpsgd", "privacy.target_epsilon=3", "federation.rounds=3", "federation.sample_rate=1.0"],
    )
    p = record["privacy"]
    assert p["worst_client_rounds"] == 3  # q = 1: every client in every round, the calibrated worst case
    assert 2.9 < p["epsilon"] <= 3.0


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["mode=central", "privacy=client_dpsgd"], "privacy"),
        (["privacy=client_dpsgd", "privacy.local_sample_rate=0"], "privacy.local_sample_rate"),
        (["privacy=client_dpsgd", "privacy.unit=user"], "privacy.unit"),
    ],
)
def test_bad_client_dpsgd_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve(compose_config([*FED, *overrides]))


def test_a_diverged_run_stops_with_a_clear_error_and_no_record(tmp_path):
    with pytest.raises(ConfigError, match="training diverged.*federation.local_lr"):
        _run(tmp_path, ["privacy=none", "federation.local_lr=1e30", "federation.rounds=2"])
    assert not (tmp_path / "record.json").exists()
