"""One privacy plan: what the budget CLI reports, what the ledger pre-checks and what a run executes
are the same (σ, q, steps, ε), checked against Opacus' loader, the accountants and real run records."""

from __future__ import annotations

import ast
import json
import math
from fractions import Fraction
from pathlib import Path

import dp_accounting
import pytest
import torch
from opacus.data_loader import DPDataLoader

from sandbox.budget import main as budget_main
from sandbox.config import ConfigError, resolve
from sandbox.federated.aggregate import (
    update_noise_multiplier as server_update_noise_multiplier,
)
from sandbox.prepare import Seeds, prepare, resolve_delta
from sandbox.privacy import SubsampledGaussianEvent, epsilon_for, noise_multiplier_for
from sandbox.privacy.plan import (
    PlanInputError,
    plan_client_dpsgd,
    plan_dpfedavg,
    plan_dpsgd,
    plan_for,
    update_noise_multiplier,
)
from sandbox.run import planned_epsilon
from sandbox.train.central import TensorRows, make_loader
from tests.conftest import TINY, compose_config, run_in

pytestmark = pytest.mark.filterwarnings("ignore")
FED = [*TINY, "mode=federated", "federation.sample_rate=0.2", "federation.eval_every=2"]


def _budget(capsys, *argv: str) -> dict:
    code = budget_main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _rdp_dp_accounting(sigma: float, q: float, steps: int, delta: float) -> float:
    """ε from Google's dp_accounting (not Opacus), for an independent check of the plan's ε."""
    accountant = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(delta)


def _run(tmp_path, overrides):
    return run_in(tmp_path, overrides)


# -- the plan's numbers --------------------------------------------------------------------------


def test_mnist_example_plans_what_opacus_runs():
    plan = plan_dpsgd(n_examples=60_000, batch_size=256, epochs=60, noise_multiplier=1.1, delta=1e-5, accountant="rdp")
    assert plan.exact_sample_rate == Fraction(1, 235) and plan.sample_rate == 1 / 235
    assert plan.steps == 14_100 and plan.batches_per_epoch == 235
    event = SubsampledGaussianEvent(noise_multiplier=1.1, sample_rate=1 / 235, steps=14_100)
    assert plan.planned_epsilon == epsilon_for(events=[event], delta=1e-5, accountant="rdp")
    assert plan.planned_epsilon == pytest.approx(2.593, abs=5e-4)
    assert plan.planned_epsilon == pytest.approx(_rdp_dp_accounting(1.1, 1 / 235, 14_100, 1e-5), rel=1e-2)
    # Opacus' Poisson loader (what train_dpsgd gets from make_private) samples at exactly this q
    rows = TensorRows(torch.zeros(60_000, 1), torch.zeros(60_000))
    loader = DPDataLoader.from_data_loader(make_loader(rows, batch_size=256, generator=torch.Generator()))
    assert loader.sample_rate == plan.sample_rate


def test_calibration_is_opacus_for_the_planned_rate_and_steps():
    plan = plan_dpsgd(n_examples=5_000, batch_size=64, epochs=3, target_epsilon=2.0, delta=1e-5, accountant="rdp")
    assert (plan.sample_rate, plan.steps) == (1 / 79, 237) and plan.calibrated
    assert plan.noise_multiplier == noise_multiplier_for(
        target_epsilon=2.0, delta=1e-5, sample_rate=1 / 79, steps=237, accountant="rdp"
    )
    assert 1.99 < plan.planned_epsilon <= 2.0


def test_dpfedavg_rounds_stop_rule_and_adaptive_split():
    fixed = plan_dpfedavg(
        n_clients=500,
        sample_rate=0.1,
        rounds=50,
        noise_multiplier=1.0,
        target_epsilon=3.0,
        delta=1e-4,
        accountant="rdp",
    )
    assert (fixed.steps, fixed.stop_at_epsilon, fixed.calibrated, fixed.components) == (50, 3.0, False, ())
    assert fixed.epsilon_bound == min(fixed.planned_epsilon, 3.0)
    adaptive = plan_dpfedavg(
        n_clients=500, sample_rate=0.1, rounds=50, noise_multiplier=1.0, delta=1e-4, clipping="adaptive"
    )
    assert adaptive.count_noise_multiplier == 0.1 * 500 / 20  # q·N/20 by default
    # the split is the one the server runs, to the bit
    for z, sigma_b in [(1.0, 2.5), (0.7, 0.9), (3.3, 100.0)]:
        assert update_noise_multiplier(z, sigma_b) == server_update_noise_multiplier(z, sigma_b)
    assert adaptive.update_noise_multiplier == server_update_noise_multiplier(1.0, 2.5)
    assert adaptive.event().noise_multiplier == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(PlanInputError, match="σ_b = 0.9 must exceed") as refused:
        plan_dpfedavg(
            n_clients=500,
            sample_rate=0.1,
            rounds=5,
            noise_multiplier=1.0,
            delta=1e-4,
            clipping="adaptive",
            count_noise_multiplier=0.9,
        )
    assert refused.value.key == "count_noise_multiplier"


def test_client_dpsgd_plans_a_client_in_every_round():
    plan = plan_client_dpsgd(local_sample_rate=0.3, local_epochs=2, rounds=5, noise_multiplier=1.2, delta=1e-5)
    assert (plan.local_steps, plan.steps, plan.sample_rate) == (7, 35, 0.3)  # round(2 / 0.3) = 7 per round
    assert plan.planned_epsilon == epsilon_for(
        events=[SubsampledGaussianEvent(noise_multiplier=1.2, sample_rate=0.3, steps=35)], delta=1e-5, accountant="rdp"
    )


@pytest.mark.parametrize(
    "call, key",
    [
        (lambda: plan_dpsgd(n_examples=100, batch_size=10, epochs=1, delta=1e-5), "noise_multiplier"),
        (
            lambda: plan_dpsgd(
                n_examples=100, batch_size=10, epochs=1, noise_multiplier=1, target_epsilon=2, delta=1e-5
            ),
            "noise_multiplier",
        ),
        (lambda: plan_dpsgd(n_examples=100, batch_size=0, epochs=1, noise_multiplier=1, delta=1e-5), "batch_size"),
        (lambda: plan_dpsgd(n_examples=100, batch_size=10, epochs=-1, noise_multiplier=1, delta=1e-5), "epochs"),
        (lambda: plan_dpsgd(n_examples=100, batch_size=10, epochs=1, noise_multiplier=1, delta=1.5), "delta"),
        (
            lambda: plan_dpsgd(
                n_examples=100, batch_size=10, epochs=1, noise_multiplier=1, delta=1e-5, accountant="moments"
            ),
            "accountant",
        ),
        (lambda: plan_dpfedavg(n_clients=10, sample_rate=0, rounds=3, noise_multiplier=1, delta=1e-3), "sample_rate"),
        (
            lambda: plan_client_dpsgd(local_sample_rate=0.2, local_epochs=1, rounds=0, noise_multiplier=1, delta=1e-3),
            "rounds",
        ),
    ],
)
def test_impossible_inputs_name_their_parameter(call, key):
    with pytest.raises(PlanInputError) as refused:
        call()
    assert refused.value.key == key


# -- the budget CLI is the plan ------------------------------------------------------------------


@pytest.mark.parametrize("accountant", ["rdp", "prv", "gdp"])
def test_budget_cli_reports_the_plan_exactly(capsys, accountant):
    report = _budget(
        capsys,
        "--sigma",
        "1.1",
        "--batch-size",
        "256",
        "--n",
        "60000",
        "--epochs",
        "60",
        "--delta",
        "1e-5",
        "--accountant",
        accountant,
    )
    plan = plan_dpsgd(
        n_examples=60_000, batch_size=256, epochs=60, noise_multiplier=1.1, delta=1e-5, accountant=accountant
    )
    assert (report["inputs"]["sample_rate"], report["inputs"]["steps"]) == (plan.sample_rate, plan.steps)
    assert report["results"][accountant]["epsilon"] == plan.planned_epsilon


def test_budget_cli_calibrates_the_plans_sigma(capsys):
    report = _budget(
        capsys, "--target-epsilon", "3", "--batch-size", "64", "--n", "5000", "--epochs", "2.5", "--accountant", "rdp"
    )
    plan = plan_dpsgd(
        n_examples=5000,
        batch_size=64,
        epochs=2.5,
        target_epsilon=3.0,
        delta=report["inputs"]["delta"],
        accountant="rdp",
    )
    assert report["results"]["rdp"]["noise_multiplier"] == plan.noise_multiplier
    assert report["results"]["rdp"]["epsilon"] == plan.planned_epsilon


# -- what runs is what was planned (records) -----------------------------------------------------


@pytest.mark.parametrize(
    "privacy",
    [["privacy.target_epsilon=4"], ["privacy.target_epsilon=null", "privacy.noise_multiplier=1.3", "train.epochs=1.5"]],
    ids=["target", "sigma"],
)
def test_a_central_dpsgd_record_is_the_budget_cli_answer(tmp_path, capsys, privacy):
    record = _run(tmp_path, [*TINY, "privacy=dpsgd", *privacy])
    p, n = record["privacy"], record["data"]["n_examples"]
    train = record["config"]["train"]
    report = _budget(
        capsys,
        "--sigma",
        repr(p["noise_multiplier"]),
        "--batch-size",
        str(train["batch_size"]),
        "--n",
        str(n),
        "--epochs",
        repr(float(train["epochs"])),
        "--accountant",
        p["accountant"],
    )
    inputs = report["inputs"]
    assert inputs["delta"] == p["delta"]  # default_delta(N), as the run resolved it
    assert (p["sample_rate"], p["steps"]) == (inputs["sample_rate"], inputs["steps"])
    assert p["sample_rate"] == 1 / math.ceil(n / train["batch_size"])
    assert p["epsilon"] == report["results"][p["accountant"]]["epsilon"]
    assert p["events"] == [
        {
            "noise_multiplier": p["noise_multiplier"],
            "sample_rate": p["sample_rate"],
            "steps": p["steps"],
            "sampling": "poisson",
        }
    ]


def _fed_plan(record, overrides):
    cfg = resolve(compose_config(overrides))
    return plan_for(cfg, n_clients=record["data"]["n_clients"])


def test_a_dpfedavg_record_is_its_plan(tmp_path):
    overrides = [*FED, "privacy=dpfedavg", "privacy.target_epsilon=2", "federation.rounds=5"]
    record = _run(tmp_path, overrides)
    p, plan = record["privacy"], _fed_plan(record, overrides)
    assert (p["steps"], p["sample_rate"], p["noise_multiplier"], p["delta"]) == (
        plan.steps,
        plan.sample_rate,
        plan.noise_multiplier,
        plan.delta,
    )
    assert p["epsilon"] == plan.planned_epsilon and plan.calibrated and plan.stop_at_epsilon is None


def test_an_adaptive_dpfedavg_record_is_its_plan(tmp_path):
    overrides = [
        *FED,
        "privacy=dpfedavg",
        "privacy.clipping=adaptive",
        "privacy.target_epsilon=null",
        "privacy.noise_multiplier=1.1",
        "privacy.count_noise_multiplier=3",
        "federation.rounds=3",
    ]
    record = _run(tmp_path, overrides)
    p, plan = record["privacy"], _fed_plan(record, overrides)
    assert (p["steps"], p["noise_multiplier"]) == (plan.steps, plan.noise_multiplier)
    assert (p["update_noise_multiplier"], p["count_noise_multiplier"]) == (
        plan.update_noise_multiplier,
        plan.count_noise_multiplier,
    )
    assert p["events"] == [plan.event().to_json()] and p["epsilon"] == plan.planned_epsilon


def test_a_stopped_dpfedavg_record_stays_within_its_plans_bound(tmp_path):
    overrides = [
        *FED,
        "privacy=dpfedavg",
        "privacy.noise_multiplier=1.0",
        "privacy.target_epsilon=3",
        "federation.rounds=30",
    ]
    record = _run(tmp_path, overrides)
    p, plan = record["privacy"], _fed_plan(record, overrides)
    assert record["status"] == "stopped_budget" and plan.stop_at_epsilon == 3.0
    assert 0 < p["steps"] < plan.steps and p["epsilon"] <= plan.epsilon_bound == 3.0
    # the rounds that ran are the most the plan's event allows within the target
    assert plan.event(steps=p["steps"]).to_json() == p["events"][0]
    assert epsilon_for(events=[plan.event(steps=p["steps"] + 1)], delta=plan.delta, accountant="rdp") > 3.0


def test_a_client_dpsgd_record_is_its_plan(tmp_path):
    overrides = [*FED, "privacy=client_dpsgd", "privacy.target_epsilon=8", "federation.rounds=3"]
    record = _run(tmp_path, overrides)
    p = record["privacy"]
    plan = plan_for(resolve(compose_config(overrides)), n_examples=record["data"]["n_examples"])
    assert (p["noise_multiplier"], p["sample_rate"], p["local_steps_per_round"], p["delta"]) == (
        plan.noise_multiplier,
        plan.sample_rate,
        plan.local_steps,
        plan.delta,
    )
    ran = plan.local_steps * p["worst_client_rounds"]
    assert p["steps"] == ran <= plan.steps
    assert p["epsilon"] == epsilon_for(events=[plan.event(steps=ran)], delta=plan.delta, accountant="rdp")
    assert p["epsilon"] <= plan.planned_epsilon <= 8.0


# -- plan_for and the ledger's pre-check ---------------------------------------------------------


def test_plan_for_resolves_delta_as_the_run_and_names_config_keys():
    cfg = resolve(compose_config([*TINY, "privacy=dpsgd"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    plan = plan_for(cfg, n_examples=len(data.train))
    assert plan.delta == resolve_delta(cfg, n=len(data.train), unit="example")
    assert plan_for(resolve(compose_config([*TINY, "privacy=none"])), n_examples=10) is None
    with pytest.raises(ConfigError, match=r"privacy\.delta"):
        plan_for(resolve(compose_config([*TINY, "privacy=dpsgd", "privacy.delta=0.01"])), n_examples=1000)
    adaptive = resolve(
        compose_config(
            [
                *FED,
                "privacy=dpfedavg",
                "privacy.clipping=adaptive",
                "privacy.target_epsilon=null",
                "privacy.noise_multiplier=1.0",
                "privacy.count_noise_multiplier=0.9",
            ]
        )
    )
    with pytest.raises(ConfigError, match=r"^privacy\.count_noise_multiplier: σ_b = 0.9 must exceed"):
        plan_for(adaptive, n_clients=200)


def test_ledger_precheck_reads_the_plan_with_clients_as_the_unit():
    overrides = [
        *FED,
        "privacy=dpfedavg",
        "federation.unit=workspace",
        "privacy.target_epsilon=null",
        "privacy.noise_multiplier=1.2",
        "federation.rounds=7",
    ]
    cfg = resolve(compose_config(overrides))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    from sandbox.federated.clients import partition_clients

    n_clients = len(partition_clients(data.corpus, data.train, unit="workspace"))
    plan = plan_for(cfg, n_clients=n_clients)
    assert plan.delta == resolve_delta(cfg, n=n_clients, unit="workspace")
    assert planned_epsilon(cfg, data) == plan.epsilon(accountant="rdp") == plan.planned_epsilon


def test_plan_module_imports_only_config_and_privacy():
    tree = ast.parse(Path(__file__).resolve().parents[2].joinpath("sandbox/privacy/plan.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    ours = {name for name in imported if name and name.startswith("sandbox")}
    assert ours and all(name.startswith(("sandbox.config", "sandbox.privacy")) for name in ours), ours
