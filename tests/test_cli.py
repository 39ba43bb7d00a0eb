"""`python -m sandbox` end to end on a tiny config: record, model, ε, sweeps and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import dp_accounting
import pytest
import torch

from tests.conftest import TINY

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]  # e2e: Flower, shadows or subprocess CLIs


def run_cli(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def independent_rdp_epsilon(privacy: dict) -> float:
    """ε from dp_accounting (Google's library, not Opacus) for what the record says ran."""
    accountant = dp_accounting.rdp.RdpAccountant()
    for event in privacy["events"]:
        gaussian = dp_accounting.GaussianDpEvent(event["noise_multiplier"])
        sampled = dp_accounting.PoissonSampledDpEvent(event["sample_rate"], gaussian)
        accountant.compose(dp_accounting.SelfComposedDpEvent(sampled, event["steps"]))
    return accountant.get_epsilon(privacy["delta"])


REQUIRED = {
    "schema_version",
    "task",
    "mode",
    "engine",
    "seed",
    "status",
    "config",
    "versions",
    "data",
    "privacy",
    "metrics",
    "curve",
}


def test_dpsgd_run_writes_record_model_and_honest_epsilon(tmp_path):
    out = tmp_path / "run"
    proc = run_cli([*TINY, "privacy=dpsgd", "privacy.target_epsilon=4", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "record.json").read_text())
    assert REQUIRED <= set(record)
    assert record["status"] == "completed" and record["engine"] == "central"
    p = record["privacy"]
    assert p["unit"] == "example" and p["sampling"] == "poisson" and p["accountant"] == "rdp"
    assert p["delta"] < 1 / record["data"]["n_examples"]
    # The ε recorded is what an independent accountant gives for the (q, σ, steps, δ) that ran...
    assert p["epsilon"] == pytest.approx(independent_rdp_epsilon(p), rel=1e-3)
    # ...the steps that ran are the planned ones, and calibration met the target from below.
    assert sum(e["steps"] for e in p["events"]) == p["steps"] > 0
    assert 3.5 < p["epsilon"] <= 4.0 + 1e-6
    assert {"epsilon", "step", "top1", "top5"} <= set(record["curve"][-1])
    assert record["curve"][-1]["epsilon"] == pytest.approx(p["epsilon"])
    for key in ("top1", "top5"):
        assert 0 <= record["metrics"][key] <= 1 and 0 <= record["metrics"]["baseline"][key] <= 1
    state = torch.load(out / "model.pt")
    assert "embedding.weight" in state and state["embedding.weight"].shape[0] == 4096
    assert "top5 accuracy" in proc.stdout and "ε = " in proc.stdout


def test_nonprivate_run_says_not_private(tmp_path):
    out = tmp_path / "run"
    proc = run_cli([*TINY, "privacy=none", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "record.json").read_text())
    assert record["privacy"]["mechanism"] == "none" and record["privacy"]["epsilon"] is None
    assert "not private" in proc.stdout


def test_multirun_sweeps_target_epsilon(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, "privacy.target_epsilon=1,8", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/record.json"))]
    assert [r["privacy"]["target_epsilon"] for r in records] == [1.0, 8.0]
    sigmas = [r["privacy"]["noise_multiplier"] for r in records]
    assert sigmas[0] > sigmas[1]  # a smaller budget needs more noise
    assert all(r["privacy"]["epsilon"] <= r["privacy"]["target_epsilon"] + 1e-6 for r in records)


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["privacy.delta=0.5"], "privacy.delta"),
        (["privacy.target_epsilon=-1"], "privacy.target_epsilon"),
        (["privacy.noise_multiplier=1.0"], "privacy"),  # both σ and a target ε set
        (["privacy.accountant=moments"], "privacy.accountant"),
        (["train.batch_size=0"], "train.batch_size"),
        (["train.epochs=abc"], "train.epochs"),
        (["data.n_users=-5"], "data.n_users"),
        (["+privacy.colour=blue"], "privacy.colour"),
        (["privacy.colour=blue"], "privacy.colour"),  # refused by the schema when Hydra composes
        (["privacy.mechanism=dp_sgd"], "privacy.mechanism"),  # an Enum field: refused by OmegaConf
        (["mode=decentral"], "mode"),
        (["privacy=dp_sgd"], "privacy"),  # no such option
        (["+sed=1"], "sed"),
        (["data=files", "data.path=/nonexistent/corpus"], "/nonexistent/corpus"),
    ],
)
def test_bad_config_is_a_clear_error_without_record(tmp_path, overrides, names):
    out = tmp_path / "run"
    base = [o for o in TINY if not o.startswith("data.")] if "data=files" in overrides else TINY
    proc = run_cli([*base, *overrides, f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)  # sandbox.cli: 3 = bad input or config
    assert proc.stderr.startswith(f"error: {names}") or (names.startswith("/") and names in proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "record.json").exists() and not (out / "model.pt").exists()


# -- --help: the groups one line each, fast (no torch, opacus, flwr before a run) ----------------------
def test_help_lists_every_config_group_in_one_line_and_the_composed_config(capsys):
    from sandbox.__main__ import main
    from sandbox.config.help import GROUPS, group_options

    top = {g.partition("/")[0] for g in group_options()}
    assert top == set(GROUPS)  # every group of sandbox/conf has a line, and no line is stale
    assert main(["--help", "privacy=dpfedavg", "federation.rounds=7"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    for group in GROUPS:
        assert sum(line.split()[0] == group for line in lines) == 1, group
    assert "  privacy    client_dpsgd | dpfedavg | dpftrl | dpsgd* | none: " in out  # options, the default starred
    assert "rounds: 7" in out and "mechanism: dpfedavg" in out  # the overrides applied


def test_help_with_a_bad_override_names_the_key_and_exits_3(capsys):
    from sandbox.__main__ import main

    assert main(["--help", "train.lrr=1"]) == 3
    assert "train.lrr" in capsys.readouterr().err


def test_the_command_line_imports_no_torch_opacus_or_flwr_before_a_run():
    """What `python -m sandbox --help` and a config error load: Hydra, the schema, the errors; torch,
    opacus, flwr, dp-accounting and scipy (seconds each) are imported by the run itself."""
    heavy = "print(sorted(m for m in ('torch', 'opacus', 'flwr', 'dp_accounting', 'scipy') if m in sys.modules))"
    for call in ("sandbox.config.help.help_text()", "main(['privacy.delta=2'])", "main(['train.lrr=1'])"):
        code = f"import sys, sandbox.config.help; from sandbox.__main__ import main; {call}; {heavy}"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert proc.stdout.strip().splitlines()[-1] == "[]", call


def test_two_of_hydras_exclusive_flags_are_one_error_line_not_a_traceback(capsys):
    from sandbox.__main__ import main

    assert main(["-m", "--cfg", "job", "privacy.target_epsilon=1,4"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: -m and --cfg: Hydra takes only one of") and "Traceback" not in err
