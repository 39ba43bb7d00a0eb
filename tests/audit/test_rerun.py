"""`python -m sandbox.audit RUN_DIR OUT_DIR audit=…`: a trained model audited again, as one model for claims."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sandbox.audit import harness
from sandbox.audit.__main__ import main as reaudit_main
from sandbox.claim import check_claim
from sandbox.config import resolve
from sandbox.prepare import Seeds, prepare
from sandbox.privacy.ledger import LedgerError
from sandbox.run import planned_audit_spend, reaudit
from tests.conftest import TINY, run_in

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]  # e2e: Flower, shadows or subprocess CLIs
QUICK = ["audit.resamples=100"]  # re-audit overrides that keep the bootstrap short
# secure noise and sampling (the default): not replayable. 20 canaries, so that some host is sampled
# whatever the draw (with TINY's 3, no host trained in about 1 draw of 5, and the audit had no members)
FEDERATED_DP = [
    "mode=federated",
    "privacy=dpfedavg",
    "privacy.target_epsilon=4",
    "federation.rounds=3",
    "federation.sample_rate=0.2",
    "data.n_canaries=20",
]


def _train(out_dir, overrides):
    return run_in(out_dir, [*TINY, "audit=none", *overrides])


def _cli(module, *args, cwd):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("central") / "run"
    _train(run_dir, ["privacy=none"])
    return run_dir


@pytest.fixture(scope="module")
def federated(tmp_path_factory):
    """A DP-FedAvg run (its own ledger) re-audited in-process with audit=canary; the users the harness was
    given as members are captured."""
    root = tmp_path_factory.mktemp("federated")
    ledger = root / "ledger.json"
    _train(root / "run", [*FEDERATED_DP, f"ledger.path={ledger}"])
    before = json.loads(ledger.read_text())["entries"]
    seen = []
    original = harness.attack_model

    def spy(cfg, data, model, trained_users, **kwargs):
        seen.append((kwargs.get("what", "shadow"), np.array(trained_users)))
        return original(cfg, data, model, trained_users, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "attack_model", spy)
        record = reaudit(root / "run", root / "canary", ["audit=canary", "audit.extraction=false", *QUICK])
    return {
        "root": root,
        "run": root / "run",
        "out": root / "canary",
        "record": record,
        "seen": seen,
        "ledger": ledger,
        "before": before,
    }


def test_reaudits_of_a_central_run_are_one_model_for_claims(central, tmp_path):
    """audit=none run, re-audited by the CLI with audit=loss and audit=canary: both records keep the
    model's sha256, say what they re-audit, and sandbox.claim judges them (with the run) as one model."""
    original = _record(central)
    raw = (central / "record.json").read_bytes()
    outs = {"loss": tmp_path / "loss", "canary": tmp_path / "canary"}
    for name, extra in [("loss", []), ("canary", ["audit.extraction=false"])]:
        proc = _cli("sandbox.audit", central, outs[name], f"audit={name}", *extra, *QUICK, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "results:" in proc.stdout and f"audit: {name}" in proc.stdout
    for name, out in outs.items():
        r = _record(out)
        assert r["model"]["sha256"] == original["model"]["sha256"] and r["audit"]["attack"] == name
        assert r["config"]["audit"]["attack"] == name and r["config"]["audit"]["resamples"] == 100
        assert {k: v for k, v in r["config"].items() if k != "audit"} == {
            k: v for k, v in original["config"].items() if k != "audit"
        }
        assert r["status"] == "completed" and r["privacy"] == original["privacy"] and r["data"] == original["data"]
        assert r["reaudit_of"] == {
            "run_dir": str(central),
            "record_sha256": hashlib.sha256(raw).hexdigest(),
            "out_dir": str(out),
        }
        assert r["timing"]["original"] == original["timing"] and r["timing"]["seconds"] > 0
        assert (out / "model.pt").read_bytes() == (central / "model.pt").read_bytes()
        assert {"model.pt", "trained_users.npy", "canaries.json", "roc.png", "audit_scores.npz"} <= {
            p.name for p in out.iterdir()
        }
        assert np.array_equal(np.load(out / "trained_users.npy"), np.load(central / "trained_users.npy"))
    assert "audit" not in original and (central / "record.json").read_bytes() == raw  # the run is left as it was
    proc = _cli("sandbox.claim", "cannot-memorize", outs["loss"], outs["canary"], cwd=tmp_path)
    assert proc.returncode in (0, 1, 2), proc.stderr  # a verdict, not "not one model" (3)
    assert "not one model" not in proc.stderr


def test_runs_save_their_trained_users(central, federated):
    """run() writes trained_users.npy (int64) beside model.pt and names it in record.model: central, every
    training user; federated, the users whose client was sampled (here not all of them)."""
    for run_dir in (central, federated["run"]):
        r = _record(run_dir)
        assert r["model"]["trained_users_file"] == "trained_users.npy"
        users = np.load(run_dir / "trained_users.npy")
        assert users.dtype == np.int64 and users.ndim == 1 and len(users) > 0
    cfg = resolve(OmegaConf.create(_record(central)["config"]))
    split = prepare(cfg, Seeds.from_seed(cfg.seed)).split
    assert np.array_equal(np.load(central / "trained_users.npy"), split.train_users)
    fed = np.load(federated["run"] / "trained_users.npy")
    assert len(fed) < _record(federated["run"])["data"]["n_train_users"]


def test_federated_dp_reaudit_audits_the_saved_members(federated):
    """Secure sampling cannot be replayed: the re-audit's members are the run's saved trained users."""
    r, saved = federated["record"], np.load(federated["run"] / "trained_users.npy")
    (what, members), *control = federated["seen"]
    assert what == "shadow" and np.array_equal(members, saved)  # the audit of the run's own model
    assert [w for w, _ in control] == ["positive control shadow"]  # the control's own (retrained) members
    assert r["model"]["sha256"] == _record(federated["run"])["model"]["sha256"]
    assert r["audit"]["attack"] == "canary" and r["privacy"]["noise_source"] == "secure"
    assert r["audit"]["accountant_epsilon"] == pytest.approx(_record(federated["run"])["privacy"]["epsilon"])
    assert np.array_equal(np.load(federated["out"] / "trained_users.npy"), saved)
    assert _record(federated["out"]) == r


def test_the_ledger_charges_the_reaudits_models_only(federated):
    """One new ledger entry, for the models the re-audit trained (its non-private control), none for the model."""
    entries = json.loads(federated["ledger"].read_text())["entries"]
    assert len(entries) == len(federated["before"]) + 1
    new = entries[-1]
    assert new["run_dir"] == str(federated["out"]) and new["run_epsilon"] is None
    trained = federated["record"]["audit"]["models_trained"]
    assert [m["what"] for m in new["models"]] == [m["what"] for m in trained] == ["positive control"]
    assert not new["models"][0]["private"] and "training" not in {m["what"] for m in new["models"]}


def test_the_ledger_total_is_checked_before_the_reaudit_trains(federated, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(federated["run"], run_dir)
    record = _record(run_dir)
    record["config"]["ledger"].update(path=str(tmp_path / "ledger.json"), total_epsilon=100.0)
    (run_dir / "record.json").write_text(json.dumps(record))
    with pytest.raises(LedgerError, match="past ledger.total_epsilon"):  # the control is not private: ∞
        reaudit(run_dir, tmp_path / "out", ["audit=canary"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "ledger.json").exists()
    cfg = resolve(OmegaConf.create(record["config"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))

    def plan(audit):
        return planned_audit_spend(resolve(OmegaConf.create({**record["config"], "audit": audit})), data)

    assert plan({"attack": "canary", "control": False}) is None  # nothing trains beside the model
    spend, eps = plan({"attack": "lira", "shadows": 2, "control": False})
    assert spend.private and spend.unit == "user" and eps == pytest.approx(2 * 4.0)  # 2 shadows at the target


def test_an_override_outside_the_audit_is_refused(central, tmp_path, capsys):
    out = tmp_path / "out"
    assert reaudit_main([str(central), str(out), "audit=canary", "privacy.target_epsilon=2"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: privacy.target_epsilon:") and "only the audit" in err
    assert not out.exists()
    assert reaudit_main([str(central), str(out), "audit=nosuch"]) == 3
    assert "audit=nosuch: no such audit" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("model", "is not the model.sha256"),
        ("record", "record.json: missing"),
        ("status", "status: 'failed'"),
        ("members", "trained_users.npy: missing: a federated run's members"),
    ],
)
def test_a_run_dir_that_is_not_of_its_model_is_refused(central, federated, tmp_path, capsys, damage, message):
    run_dir = tmp_path / "run"
    shutil.copytree(federated["run"] if damage == "members" else central, run_dir)
    if damage == "model":  # another model's weights beside the record
        state = torch.load(run_dir / "model.pt")
        torch.save({k: v + 1 for k, v in state.items()}, run_dir / "model.pt")
    elif damage == "record":
        (run_dir / "record.json").unlink()
    elif damage == "status":
        (run_dir / "record.json").write_text(json.dumps({**_record(run_dir), "status": "failed"}))
    else:  # a federated run from before trained_users.npy
        (run_dir / "trained_users.npy").unlink()
    out = tmp_path / "out"
    assert reaudit_main([str(run_dir), str(out), "audit=loss", *QUICK]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_non_empty_out_dir_is_refused(central, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert reaudit_main([str(central), str(out), "audit=loss"]) == 3
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_reaudit_that_finds_a_dp_bug_keeps_its_failed_record_and_exits_4(central, tmp_path, monkeypatch, capsys):
    bug = {
        "attack": "loss",
        "relation": "add/remove one user",
        "result": "dp_bug",
        "reason": "an alarm fired",
        "accountant_epsilon": 1.0,
        "models_trained": [],
    }
    monkeypatch.setattr("sandbox.run.run_audit", lambda *args, **kwargs: bug)
    out = tmp_path / "out"
    assert reaudit_main([str(central), str(out), "audit=loss"]) == 4
    assert "PROBABLE DP BUG" in capsys.readouterr().err
    r = _record(out)
    assert r["status"] == "failed" and r["audit"] == bug and r["model"]["sha256"] == _record(central)["model"]["sha256"]


LIRA = ["audit=lira", "audit.shadows=4", "audit.workers=1", "audit.resamples=100"]
# non-private: its shadows replay exactly; a DP run's shadows draw secure noise, so its audits differ run to run


@pytest.mark.e2e
def test_a_lira_reaudit_of_a_run_dir_equals_the_inline_audit(tmp_path):
    """`python -m sandbox.audit RUN_DIR audit=lira` on a trained (non-private) run gives the AUC and TPRs the
    same audit gave inline, and goes to RUN_DIR/audits/lira without touching the run's own files."""
    inline = _train(tmp_path / "run", ["privacy=none", *LIRA])
    run_files = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    proc = _cli("sandbox.audit", tmp_path / "run", *LIRA, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = _record(tmp_path / "run" / "audits" / "lira")
    assert again["model"]["sha256"] == inline["model"]["sha256"]
    for key in ("auc", "auc_ci", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"):
        assert again["audit"][key] == inline["audit"][key], key
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == run_files
    # the claim checker reads the run and its re-audits (RUN_DIR/audits/*) as audits of one model
    result = check_claim("cannot-memorize", [tmp_path / "run"])
    assert result.record.split(", ") == [
        str(tmp_path / "run" / "record.json"),
        str(tmp_path / "run" / "audits" / "lira" / "record.json"),
    ]
