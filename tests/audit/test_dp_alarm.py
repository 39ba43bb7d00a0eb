"""The DP-bug alarm has power: DP-SGD run with 100× less noise than it records, at a claimed ε = 1,
is flagged through the command line (exit 1, ``status: failed``); the same run done honestly is not.

The setting (measured before it was written down, README "Audits"): central DP-SGD calibrated to
ε = 1 on a 400-user corpus with 200 canaries, each planted once (``data.canary_repeats=1``) by a
fair coin (``data.canary_inclusion=bernoulli``). A canary is then one example inside a host user:
the audited relation is add/remove one example, the accountant's own relation, so ε' = ε. The
patch divides the standard deviation of the noise Opacus adds by 100 while the optimizer's
``noise_multiplier`` (which the record's events read) stays the calibrated one. Measured over
seeds 0-9 (secure noise, a fresh draw each run): AUC 0.85-0.92, CI lower end 0.80-0.89 > 0.730 =
max_auc(ε ≈ 1, δ = 1e-5); one-run bound 1.50-2.23 > ε ≈ 0.99 (best guess count: 40% of m). Honest
runs (seeds 0-4): AUC 0.47-0.52, CI lower end 0.40-0.46, one-run bound 0. With train.lr=0.02 the
margin is thin (seed 4: CI lower end 0.716, one-run 0.81, not flagged), hence lr 0.05.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]  # e2e: Flower, shadows or subprocess CLIs

UNDER_NOISED = [
    *TINY,
    "data.n_users=400",
    "data.n_canaries=200",
    "data.n_fresh_canaries=300",
    "data.canary_repeats=1",
    "data.canary_inclusion=bernoulli",
    "privacy=dpsgd",
    "privacy.target_epsilon=1",
    "train.batch_size=256",
    "train.epochs=15",
    "train.lr=0.05",
    "audit=canary",
    "audit.extraction=false",
    "audit.resamples=200",
]


REPO = Path(__file__).resolve().parents[2]

# Run as `python -c` in a child process, so the patch applies to that run only and Hydra's logging
# and stderr belong to that process (in-process Hydra under pytest's capture loses sys.stderr).
UNDER_NOISED_MAIN = """
import json, sys
import opacus.optimizers.optimizer as opacus_optimizer
import opacus.optimizers.optimizer_fast_gradient_clipping as opacus_ghost
real, stds = opacus_optimizer._generate_noise, []

def under_noised(std, reference, generator=None, secure_mode=False):
    # Opacus adds N(0, (σC/100)²) where it should add N(0, (σC)²); the σ it records is untouched
    stds.append(std)
    return real(std / 100, reference, generator=generator, secure_mode=secure_mode)

opacus_ghost._generate_noise = opacus_optimizer._generate_noise = under_noised
from sandbox.__main__ import main
try:
    sys.exit(main())
finally:
    with open(sys.argv[-1].split("=", 1)[1] + "/patched_stds.json", "w") as f:
        json.dump(sorted(set(stds)), f)
"""


def _cli(out: Path, overrides: list[str], *, under_noised: bool) -> subprocess.CompletedProcess:
    """``python -m sandbox OVERRIDES`` (under-noised: with the patch above) in a child process."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [*overrides, f"hydra.run.dir={out}"]
    command = (
        [sys.executable, "-c", UNDER_NOISED_MAIN, *argv] if under_noised else [sys.executable, "-m", "sandbox", *argv]
    )
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def test_an_under_noised_mechanism_is_flagged_and_an_honest_one_is_not(tmp_path):
    proc = _cli(tmp_path / "bug", UNDER_NOISED, under_noised=True)
    record = json.loads((tmp_path / "bug" / "record.json").read_text())
    stds = json.loads((tmp_path / "bug" / "patched_stds.json").read_text())
    p, a = record["privacy"], record["audit"]
    # the patch ran, and the record states the calibrated σ: what it says is not what ran
    assert stds == [pytest.approx(p["noise_multiplier"] * p["clip_norm"])]
    assert 0.9 < p["epsilon"] <= 1.0 + 1e-6
    assert proc.returncode == 4 and record["status"] == "failed" and a["result"] == "dp_bug"  # sandbox.cli: 4
    assert "PROBABLE DP BUG" in proc.stderr and "Traceback" not in proc.stderr
    cmp, v = a["accountant_comparison"], a["verdict_inputs"]
    assert a["relation"] == "add/remove one example inside one user present in both worlds"
    assert cmp["epsilon"] == p["epsilon"] and cmp["delta"] == p["delta"]  # the accountant's own relation
    assert a["max_auc_permitted"] == pytest.approx(0.73, abs=0.002)
    # both rules fire, each with a wide margin (see the module docstring)
    assert v["auc_alarm"] and a["auc_ci"][0] > a["max_auc_permitted"]
    assert v["one_run_alarm"] and a["one_run_eps_lower_bound"] > cmp["epsilon"]
    assert v["eps_lower_bound_raises_alarm"] is False  # the many-targets heuristic alone raises nothing
    assert a["control"]["passed"] and a["models_trained"][0]["what"] == "positive control"

    proc = _cli(tmp_path / "honest", UNDER_NOISED, under_noised=False)  # the same run, honestly noised
    record = json.loads((tmp_path / "honest" / "record.json").read_text())
    a = record["audit"]
    assert proc.returncode == 0 and record["status"] == "completed", proc.stderr[-2000:]
    assert a["result"] == "measured" and not a["verdict_inputs"]["auc_alarm"]
    assert not a["verdict_inputs"]["one_run_alarm"]
    assert a["auc_ci"][0] < 0.6 and a["one_run_eps_lower_bound"] < 0.5
