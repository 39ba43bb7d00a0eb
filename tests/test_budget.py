"""`python -m sandbox.budget`: output checked against sandbox.privacy, refusals checked
for one `error:` line, exit code 2 and no traceback."""

import json
import math
import subprocess
import sys
from fractions import Fraction

import pytest

from sandbox.budget import main, steps_from_epochs
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
    assert "sigma=1.1" in header and "steps=14063" in header and "delta=1e-05" in header
    assert columns.split() == ["accountant", "epsilon", "note"]
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert set(rows) == set(ACCOUNTANTS)
    for name in ACCOUNTANTS:
        assert float(rows[name]) == pytest.approx(_epsilon(1.1, 256 / 60000, 14063, 1e-5, name), rel=1e-3)
    assert "unit=example" in out and "sampling=poisson" in out and "add/remove one example" in out


def test_json_matches_epsilon_for(capsys):
    code, out, _ = _run(capsys, [*MNIST, "--json"])
    assert code == 0
    report = json.loads(out)
    inputs = report["inputs"]
    assert (inputs["steps"], inputs["sample_rate"], inputs["delta"]) == (14063, 256 / 60000, 1e-5)
    assert (inputs["unit"], inputs["sampling"]) == ("example", "poisson")
    for name in ACCOUNTANTS:
        result = report["results"][name]
        assert result["error"] is None
        assert result["epsilon"] == _epsilon(1.1, 256 / 60000, 14063, 1e-5, name)


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
    "epochs, rate, steps",
    [
        (60, Fraction(256, 60000), 14063),
        (7, Fraction(7, 50000), 50000),
        (1, Fraction(1, 3), 3),
        (0.5, Fraction(1, 4), 2),
        (2.5, Fraction("0.4"), 7),
    ],
)
def test_steps_from_epochs_is_the_ceiling_of_epochs_over_q(epochs, rate, steps):
    assert steps_from_epochs(epochs=epochs, sample_rate=rate) == steps


def test_epochs_to_steps_is_exact_not_float_rounded(capsys):
    # in floats 7 / (7 / 50000) is 50000.00000000001, whose ceiling would be 50001
    argv = ["--sigma", "5", "--batch-size", "7", "--n", "50000", "--epochs", "7", "--accountant", "rdp"]
    code, out, _ = _run(capsys, [*argv, "--json"])
    assert code == 0 and json.loads(out)["inputs"]["steps"] == 50000


IMPOSSIBLE = {
    "sigma zero": ["--sigma", "0", *SMALL],
    "sigma negative": ["--sigma", "-1", *SMALL],
    "sigma nan": ["--sigma", "nan", *SMALL],
    "rate zero": ["--sigma", "1", "--sample-rate", "0", "--steps", "10", "--delta", "1e-5"],
    "rate above one": ["--sigma", "1", "--sample-rate", "1.5", "--steps", "10", "--delta", "1e-5"],
    "delta zero": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "0"],
    "delta one": ["--sigma", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "1"],
    "delta >= 1/n": ["--sigma", "1", "--batch-size", "10", "--n", "100", "--steps", "10", "--delta", "0.01"],
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


@pytest.mark.parametrize("argv", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
def test_impossible_input_is_one_error_line_and_exit_2(capsys, argv):
    code, out, err = _run(capsys, argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err and "usage:" not in err


def test_a_failing_accountant_is_reported_while_the_others_print(capsys):
    # Opacus' PRV refuses δ this small (floating-point error would dominate)
    code, out, err = _run(capsys, ["--sigma", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-17"])
    assert code == 1
    assert err.startswith("error: accountant prv failed") and "Traceback" not in err
    rows = {line.split()[0]: line.split()[1] for line in out.strip().splitlines()[3:]}
    assert rows["prv"] == "failed"
    assert float(rows["rdp"]) == pytest.approx(_epsilon(1.0, 0.01, 100, 1e-17, "rdp"), rel=1e-3)
    assert math.isfinite(float(rows["gdp"]))


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "--target-epsilon" in capsys.readouterr().out


def _module(*argv):
    return subprocess.run(
        [sys.executable, "-m", "sandbox.budget", *argv], capture_output=True, text=True, timeout=120
    )


def test_module_entry_point_refuses_impossible_input_without_traceback():
    done = _module("--sigma", "1", "--sample-rate", "2", "--steps", "10", "--delta", "1e-5")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --sample-rate") and "Traceback" not in done.stderr
