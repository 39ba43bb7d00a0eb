"""`python -m sandbox.budget`: output checked against sandbox.privacy, refusals checked
for one `error:` line naming the flag, exit code 3 (sandbox.cli) and no traceback."""

import json
import math
import subprocess
import sys

import pytest

from sandbox.budget import main
from sandbox.privacy import ACCOUNTANTS, SubsampledGaussianEvent, epsilon_for, noise_multiplier_for

MNIST = ["--sigma", "1.1", "--batch-size", "256", "--n", "60000", "--epochs", "60", "--delta", "1e-5"]
SMALL = ["--sample-rate", "0.01", "--steps", "300", "--delta", "1e-5"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _epsilon(sigma, q, steps, delta, accountant):
    event = SubsampledGaussianEvent(noise_multiplier=sigma, sample_rate=q, steps=steps)
    return epsilon_for(events=[event], delta=delta, accountant=accountant)


def test_table_has_one_row_per_accountant_with_its_epsilon(capsys):
    code, out, err = _run(capsys, MNIST)
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    header, columns, table = lines[0], lines[3], lines[4:]
    assert "sigma=1.1" in header and "steps=14100" in header and "delta=1e-05" in header
    assert "1/235" in header
    assert columns.split() == ["accountant", "epsilon", "note"]
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert set(rows) == set(ACCOUNTANTS)
    for name in ACCOUNTANTS:
        assert float(rows[name]) == pytest.approx(_epsilon(1.1, 1 / 235, 14100, 1e-5, name), rel=1e-3)
    assert "unit=example" in out and "sampling=poisson" in out and "add/remove one example" in out


def test_json_matches_epsilon_for(capsys):
    code, out, _ = _run(capsys, [*MNIST, "--json"])
    assert code == 0
    report = json.loads(out)
    inputs = report["inputs"]
    # what a run executes: Opacus samples at q = 1/⌈60000/256⌉ = 1/235 for round(60 · 235) steps
    assert (inputs["steps"], inputs["sample_rate"], inputs["delta"]) == (14100, 1 / 235, 1e-5)
    assert (inputs["sample_rate_exact"], inputs["batches_per_epoch"]) == ("1/235", 235)
    assert (inputs["unit"], inputs["sampling"]) == ("example", "poisson")
    for name in ACCOUNTANTS:
        result = report["results"][name]
        assert result["error"] is None
        assert result["epsilon"] == _epsilon(1.1, 1 / 235, 14100, 1e-5, name)
    assert report["results"]["rdp"]["epsilon"] == pytest.approx(2.593, abs=5e-4)


def test_target_epsilon_gives_the_calibrated_sigma_and_what_it_achieves(capsys):
    code, out, _ = _run(capsys, ["--target-epsilon", "2", *SMALL, "--json"])
    assert code == 0
    results = json.loads(out)["results"]
    assert set(results) == set(ACCOUNTANTS)
    for name, result in results.items():
        sigma = result["noise_multiplier"]
        assert result["epsilon"] == _epsilon(sigma, 0.01, 300, 1e-5, name)
        assert 1.99 < result["epsilon"] <= 2.0
    # the same question through the library gives the same σ
    assert results["rdp"]["noise_multiplier"] == noise_multiplier_for(
        target_epsilon=2.0, delta=1e-5, sample_rate=0.01, steps=300, accountant="rdp"
    )


def test_target_epsilon_table_has_sigma_column(capsys):
    code, out, _ = _run(capsys, ["--target-epsilon", "2", *SMALL, "--accountant", "rdp"])
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-2].split()[:3] == ["accountant", "sigma", "epsilon"]
    assert lines[-1].split()[0] == "rdp" and len(lines) == 5


def test_accountant_flag_restricts_to_one(capsys):
    code, out, _ = _run(capsys, ["--sigma", "1.0", *SMALL, "--accountant", "gdp", "--json"])
    assert code == 0
    assert list(json.loads(out)["results"]) == ["gdp"]


def test_missing_delta_defaults_from_n_and_unit_is_reported(capsys):
    argv = ["--sigma", "1.0", "--batch-size", "10", "--n", "2000", "--steps", "50", "--unit", "user"]
    code, out, _ = _run(capsys, [*argv, "--json"])
    inputs = json.loads(out)["inputs"]
    assert code == 0
    assert (inputs["delta"], inputs["delta_source"]) == (1e-5, "default_delta(n)")
    assert inputs["neighbouring_relation"] == "add/remove one user"


@pytest.mark.parametrize(
    "n, batch, epochs, rate, steps",
    [
        (60000, 256, 60, 1 / 235, 14100),  # ⌈60000/256⌉ = 235
        (50000, 7, 7, 1 / 7143, 50001),  # ⌈50000/7⌉ = 7143
        (3, 1, 1, 1 / 3, 3),
        (40, 16, 2.5, 1 / 3, 8),  # round(7.5) = 8: half to even, as Python's round in the trainer
        (40, 16, 0.1, 1 / 3, 1),  # at least one step
        (100, 100, 1, 1.0, 1),
    ],
)
def test_batch_size_and_n_give_the_rate_and_steps_a_run_executes(capsys, n, batch, epochs, rate, steps):
    argv = ["--sigma", "5", "--batch-size", str(batch), "--n", str(n), "--epochs", str(epochs), "--accountant", "rdp"]
    code, out, _ = _run(capsys, [*argv, "--json"])
    inputs = json.loads(out)["inputs"]
    assert code == 0 and (inputs["sample_rate"], inputs["steps"]) == (rate, steps)


def test_batch_size_n_and_steps_use_the_run_rate(capsys):
    code, out, _ = _run(
        capsys,
        [
            "--sigma",
            "1",
            "--batch-size",
            "256",
            "--n",
            "60000",
            "--steps",
            "1000",
            "--delta",
            "1e-5",
            "--accountant",
            "rdp",
            "--json",
        ],
    )
    report = json.loads(out)
    assert code == 0 and (report["inputs"]["sample_rate"], report["inputs"]["steps"]) == (1 / 235, 1000)
    assert report["results"]["rdp"]["epsilon"] == _epsilon(1.0, 1 / 235, 1000, 1e-5, "rdp")


@pytest.mark.parametrize("rate, epochs, steps", [(0.25, 1, 4), (0.3, 2, 7), (0.4, 1, 2), (0.01, 0.001, 1)])
def test_sample_rate_and_epochs_give_round_epochs_over_q(capsys, rate, epochs, steps):
    # the rule client DP-SGD runs for its local steps (round(epochs / q), at least 1)
    argv = ["--sigma", "2", "--sample-rate", str(rate), "--epochs", str(epochs), "--delta", "1e-5"]
    code, out, _ = _run(capsys, [*argv, "--accountant", "rdp", "--json"])
    assert code == 0 and json.loads(out)["inputs"]["steps"] == steps


IMPOSSIBLE = {
    "sigma zero": ["--sigma", "0", *SMALL],
    "sigma negative": ["--sigma", "-1", *SMALL],
    "sigma nan": ["--sigma", "nan", *SMALL],
    "rate zero": ["--sigma", "1", "--sample-rate", "0", "--steps", "10", "--delta", "1e-5"],
    "rate above one": ["--sigma", "1", "--sample-rate", "1.5", "--steps", "10", "--delta", "1e-5"],
    "delta zero": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "0"],
    "delta one": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "1"],
    "delta >= 1/n": ["--sigma", "1", "--batch-size", "10", "--n", "100", "--steps", "10", "--delta", "0.01"],
    "epochs negative with n": ["--sigma", "1", "--batch-size", "10", "--n", "100", "--epochs", "-1"],
    "epochs inf": ["--sigma", "1", "--sample-rate", "0.1", "--epochs", "inf", "--delta", "1e-5"],
    "epsilon zero": ["--target-epsilon", "0", *SMALL],
    "epsilon negative": ["--target-epsilon", "-3", *SMALL],
    "steps zero": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "0", "--delta", "1e-5"],
    "steps negative": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "-5", "--delta", "1e-5"],
    "steps fractional": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "2.5", "--delta", "1e-5"],
    "epochs zero": ["--sigma", "1", "--sample-rate", "0.1", "--epochs", "0", "--delta", "1e-5"],
    "batch above n": ["--sigma", "1", "--batch-size", "300", "--n", "200", "--steps", "10", "--delta", "1e-5"],
    "batch zero": ["--sigma", "1", "--batch-size", "0", "--n", "200", "--steps", "10", "--delta", "1e-5"],
    "batch without n": ["--sigma", "1", "--batch-size", "10", "--steps", "10", "--delta", "1e-5"],
    "no rate": ["--sigma", "1", "--steps", "10", "--delta", "1e-5"],
    "no delta, no n": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "10"],
    "no steps": ["--sigma", "1", "--sample-rate", "0.1", "--delta", "1e-5"],
    "no question": SMALL,
    "steps and epochs": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "5", "--epochs", "2", "--delta", "1e-5"],
    "sigma and target": ["--sigma", "1", "--target-epsilon", "2", *SMALL],
    "rate and batch": ["--sigma", "1", "--batch-size", "5", "--n", "100", *SMALL],
    "unknown accountant": ["--sigma", "1", *SMALL, "--accountant", "moments"],
    "not a number": ["--sigma", "one", *SMALL],
}


FLAG_OF = {
    "sigma": "--sigma",
    "rate": "--sample-rate",
    "delta": "--delta",
    "epsilon": "--target-epsilon",
    "steps": "--steps",
    "epochs": "--epochs",
    "batch": "--batch-size",
    "no rate": "--sample-rate",
    "no delta": "--delta",
    "no question": "--sigma",
    "sigma and": "--sigma",
    "rate and": "--sample-rate",
    "unknown accountant": "--accountant",
    "not a number": "--sigma",
    "no steps": "--steps",
}


@pytest.mark.parametrize("case", IMPOSSIBLE, ids=IMPOSSIBLE.keys())
def test_impossible_input_is_one_error_line_naming_the_flag_and_exit_3(capsys, case):
    code, out, err = _run(capsys, IMPOSSIBLE[case])
    assert code == 3
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err and "usage:" not in err
    flag = next(flag for prefix, flag in FLAG_OF.items() if case.startswith(prefix))
    assert flag in err, (case, err)


def test_a_failing_accountant_is_reported_while_the_others_print(capsys):
    # Opacus' PRV refuses δ this small (floating-point error would dominate)
    code, out, err = _run(capsys, ["--sigma", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-17"])
    assert code == 3
    assert err.startswith("error: --accountant prv failed") and "Traceback" not in err and err.count("\n") == 1
    rows = {line.split()[0]: line.split()[1] for line in out.strip().splitlines()[3:]}
    assert rows["prv"] == "failed"
    assert float(rows["rdp"]) == pytest.approx(_epsilon(1.0, 0.01, 100, 1e-17, "rdp"), rel=1e-3)
    assert math.isfinite(float(rows["gdp"]))


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "--target-epsilon" in capsys.readouterr().out


def _module(*argv):
    return subprocess.run([sys.executable, "-m", "sandbox.budget", *argv], capture_output=True, text=True, timeout=120)


def test_module_entry_point_refuses_impossible_input_without_traceback():
    done = _module("--sigma", "1", "--sample-rate", "2", "--steps", "10", "--delta", "1e-5")
    assert done.returncode == 3
    assert done.stderr.startswith("error: --sample-rate") and "Traceback" not in done.stderr


def test_an_unreadable_ledger_is_bad_input(tmp_path, capsys):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    code, out, err = _run(capsys, ["--ledger", str(path)])
    assert (code, out) == (3, "") and err.startswith("error: --ledger") and err.count("\n") == 1
