"""`python -m sandbox.report RUN_DIR`: report.md + self-contained report.html + report_*.png.

Most run directories here are hand-written: minimal records shaped like what `sandbox.run`
writes (central and federated curves, harness and suggestions audits, canary exposure), an
`audit_scores.npz` laid out as `sandbox.audit.harness` saves it, and a claim result shaped like
`ClaimResult.to_dict`. One test reports on a real tiny run.
"""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sandbox.report import ReportError, make_report
from sandbox.report.__main__ import main
from sandbox.report.fields import Fields
from sandbox.report.plots import unseen_canary_exposure
from sandbox.report.sections import _series
from tests.conftest import TINY, compose_config

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = {"report_utility.png", "report_curve.png", "report_epsilon.png", "report_roc.png", "report_exposure.png"}


def central_record(**overrides) -> dict:
    """Example-level DP-SGD, four curve points, no audit."""
    record = {
        "schema_version": 1,
        "task": "emoji",
        "mode": "central",
        "engine": "central",
        "seed": 3,
        "status": "completed",
        "data": {"n_users": 300, "n_train_users": 231, "n_test_users": 58, "n_examples": 4603},
        "privacy": {
            "mechanism": "dpsgd",
            "unit": "example",
            "epsilon": 2.5,
            "delta": 1e-05,
            "accountant": "rdp",
            "noise_multiplier": 1.25,
            "sample_rate": 0.05,
            "sampling": "poisson",
            "steps": 40,
            "clip_norm": 1.0,
            "target_epsilon": 3.0,
            "neighbouring_relation": "add/remove one example",
        },
        "metrics": {"top1": 0.25, "top5": 0.5, "baseline": {"top1": 0.125, "top5": 0.375}, "split": "held-out users"},
        "curve": [
            {"step": 10 * i, "epsilon": 0.625 * i, "train_loss": 3.0 - 0.25 * i, "top1": 0.0625 * i, "top5": 0.125 * i}
            for i in (1, 2, 3, 4)
        ],
    }
    record.update(overrides)
    return record


def federated_record() -> dict:
    """User-level DP-FedAvg, six rounds, held-out metrics every second round (eval_every=2)."""
    curve = [
        {
            "round": r,
            "clients": 40,
            "clip_norm": 1.0,
            "epsilon": 0.5 * r,
            "train_loss": 3.5 - 0.1 * r,
            **({"top1": 0.125, "top5": 0.25 + 0.0625 * r} if r % 2 == 0 else {}),
        }
        for r in range(1, 7)
    ]
    return central_record(
        mode="federated",
        engine="inprocess",
        curve=curve,
        privacy={
            "mechanism": "dpfedavg",
            "unit": "user",
            "epsilon": 3.0,
            "delta": 1e-4,
            "accountant": "rdp",
            "noise_multiplier": 1.0,
            "sample_rate": 0.2,
            "sampling": "poisson",
            "steps": 6,
            "clip_norm": 1.0,
        },
    )


def loss_audit(**overrides) -> dict:
    audit = {
        "attack": "loss",
        "level": "user",
        "threat": "scores",
        "auc": 0.625,
        "auc_ci": [0.5, 0.75],
        "tpr_at_0.1pct_fpr": 0.0,
        "tpr_at_0.1pct_fpr_ci": [0.0, 0.0625],
        "tpr_at_1pct_fpr": 0.125,
        "tpr_at_1pct_fpr_ci": [0.0, 0.25],
        "n_members": 60,
        "n_nonmembers": 40,
        "eps_lower_bound": 0.0,
        "accountant_epsilon": 2.5,
        "one_run_eps_lower_bound": None,
        "control": {"ran_on": "control run", "passed": True, "reason": "control caught members"},
        "result": "measured",
        "reason": "control caught members; lower bound within the accountant's ε",
        "roc_plot": "roc.png",
        "scores_file": "audit_scores.npz",
    }
    audit.update(overrides)
    return audit


def canary_audit() -> dict:
    return loss_audit(
        attack="canary",
        canaries={
            "planted": 20,
            "planted_in_trained_users": 15,
            "fresh": 50,
            "repeats": 10,
            "users_per_canary": 1,
            "exposure_by_rank": {
                "trained_hosts": {"n": 15, "mean": 2.25, "max": 4.5},
                "untrained_hosts": {"n": 5, "mean": 1.25, "max": 2.0},
            },
            "exposure_by_fit": {
                "trained_hosts": {"n": 15, "mean": 2.5, "max": 6.25},
                "untrained_hosts": {"n": 5, "mean": 1.5, "max": 2.5},
            },
            "max_exposure_possible_by_rank": 5.672,
        },
    )


def suggestions_record() -> dict:
    """task=jobs, audit=suggestions: ranking metrics, nested membership/attribute, no scores file."""
    ranking = {
        "held_out_users": {"recall@10": 0.25, "ndcg@10": 0.125, "n_users": 61},
        "held_out_users_popularity": {"recall@10": 0.1875, "ndcg@10": 0.0625},
        "training_users": {"recall@10": 0.375, "ndcg@10": 0.25, "n_users": 228},
        "training_users_popularity": {"recall@10": 0.1875, "ndcg@10": 0.0625},
    }
    audit = {
        "attack": "suggestions",
        "level": "user",
        "threat": "top-10 list shown to the user",
        "result": "measured",
        "membership": {
            "auc": 0.5625,
            "auc_ci": [0.5, 0.625],
            "tpr_at_fpr": {"0.001": 0.0, "0.01": 0.03125},
            "tpr_at_fpr_ci": {"0.001": [0.0, 0.05], "0.01": [0.0, 0.0625]},
            "n_members": 310,
            "n_nonmembers": 77,
            "score": "share of history items in the list",
        },
        "attribute": {
            "name": "seeking",
            "result": "measured",
            "members": {
                "n": 310,
                "base_rate": 0.3,
                "advantage": 0.375,
                "advantage_ci": [0.25, 0.5],
                "auc": 0.75,
                "auc_ci": [0.7, 0.8],
            },
            "non_members": {
                "n": 39,
                "base_rate": 0.25,
                "advantage": 0.3125,
                "advantage_ci": [0.0, 0.625],
                "auc": 0.7,
                "auc_ci": [0.5, 0.9],
            },
            "gap": 0.0625,
            "gap_ci": [-0.25, 0.375],
        },
    }
    return central_record(
        task="jobs",
        privacy={
            "mechanism": "none",
            "unit": "example",
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "sampling": None,
            "steps": 24,
        },
        metrics={
            "top1": 0.0,
            "top10": 0.0625,
            "baseline": {"top1": 0.0, "top10": 0.0625},
            "ranking": ranking,
            "split": "held-out users",
        },
        curve=[{"step": s, "epsilon": None, "train_loss": 6.0, "top1": 0.0, "top10": 0.0625} for s in (3, 6)],
        audit=audit,
    )


CLAIM = {
    "name": "cannot-memorize",
    "promise": "Our models cannot learn, memorize or reproduce customer data.",
    "claim_file": "conf/claim/cannot-memorize.yaml",
    "record": "record.json",
    "verdict": "FAIL",
    "evidence": [
        {
            "check": "membership TPR @ 0.01 FPR (user)",
            "measured": 0.125,
            "ci": [0.0, 0.25],
            "bound": "≤ 0.02 (CI upper end)",
            "verdict": "INCONCLUSIVE",
            "reason": "CI straddles 0.02",
            "source": "audit loss, user level",
        },
        {
            "check": "ε (user level)",
            "measured": 2.5,
            "ci": None,
            "bound": "≤ 1 at δ ≤ 1e-05",
            "verdict": "FAIL",
            "reason": "example-level ε never satisfies a user-level claim",
            "source": "privacy",
        },
    ],
}


def run_dir(
    tmp_path: Path, record: dict, *, scores: bool = False, claim: dict | None = None, name: str = "run"
) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "record.json").write_text(json.dumps(record), encoding="utf-8")
    if scores:  # laid out as sandbox.audit.harness._save_scores writes it
        rng = np.random.default_rng(0)
        members = np.r_[np.ones(60, bool), np.zeros(40, bool)]
        np.savez(
            d / "audit_scores.npz",
            names=np.array(["loss (dpsgd)", "loss control (no DP)"]),
            scores_0=rng.normal(size=100) + 0.3 * members,
            members_0=members,
            scores_1=rng.normal(size=100) + members,
            members_1=members,
        )
    if claim is not None:
        (d / f"claim_{claim['name']}.json").write_text(json.dumps(claim), encoding="utf-8")
    return d


def report(d: Path) -> tuple[str, str]:
    assert main([str(d)]) == 0
    return (d / "report.md").read_text(encoding="utf-8"), (d / "report.html").read_text(encoding="utf-8")


def header_rows(page: str) -> dict[str, str]:
    table = re.search(r'<table id="run">(.*?)</table>', page, re.S).group(1)
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table)}


def embedded_pngs(page: str) -> list[bytes]:
    """Decode every <img>'s src, asserting each is a base64 PNG data URI."""
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == page.count("<img")
    out = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(PNG_SIGNATURE)
        out.append(data)
    return out


def assert_self_contained(page: str) -> None:
    for ref in ("http://", "https://", 'src="file', "file://", "<link", "<script", "url("):
        assert ref not in page, ref


def test_private_central_report_with_audit_and_claim(tmp_path):
    d = run_dir(tmp_path, central_record(audit=loss_audit()), scores=True, claim=CLAIM)
    md, page = report(d)
    assert header_rows(page) == {
        "task": "emoji",
        "mode": "central",
        "engine": "central",
        "seed": "3",
        "status": "completed",
        "mechanism": "dpsgd",
        "ε": "2.5",
        "δ": "1e-05",
        "unit": "example",
        "accountant": "rdp",
        "sampling": "poisson",
        "sample rate q": "0.05",
        "noise multiplier σ": "1.25",
        "clip norm": "1",
        "target ε": "3",
        "neighbouring relation": "add/remove one example",
        "optimizer steps": "40",
        "users": "300",
        "training users": "231",
        "held-out users": "58",
        "training examples": "4603",
        "run directory": str(d),
    }
    for row in ("| task | emoji |", "| ε | 2.5 |", "| δ | 1e-05 |", "| unit | example |", "| sampling | poisson |"):
        assert row in md
    figures = {p.name for p in d.glob("report_*.png")}
    assert figures == ALL_FIGURES - {"report_exposure.png"}
    pngs = embedded_pngs(page)
    assert sorted(pngs) == sorted(p.read_bytes() for p in d.glob("report_*.png"))  # the same figures, embedded
    assert_self_contained(page)
    for name in figures:
        assert f"]({name})" in md  # the Markdown links the files beside it
    assert "*Skipped: canary exposure: the loss audit records no canary exposure (audit=canary does)*" in md
    assert "Verdicts: claim cannot-memorize: FAIL; audit (loss): MEASURED." in md
    # what a reviewer reads first: the verdicts, then the claim's evidence, before the run and its audit
    assert md.index("Verdicts:") < md.index("## Claims") < md.index("## The run") < md.index("## Audit")


def test_claim_verdict_and_evidence_table(tmp_path):
    d = run_dir(tmp_path, central_record(), claim=CLAIM)
    md, page = report(d)
    assert "### cannot-memorize: FAIL" in md
    assert (
        "| ε (user level) | 2.5 | — | ≤ 1 at δ ≤ 1e-05 | FAIL | example-level ε never satisfies a user-level "
        "claim [privacy] |"
    ) in md
    assert "| membership TPR @ 0.01 FPR (user) | 0.125 | [0, 0.25] |" in md
    assert "| overall |  |  |  | FAIL |  |" in md
    assert page.count('<td class="v-FAIL">FAIL</td>') == 2 and '<td class="v-INCONCLUSIVE">' in page


def test_federated_curve_plots_the_evaluated_rounds_and_epsilon_every_round(tmp_path):
    record = federated_record()
    d = run_dir(tmp_path, record)
    md, page = report(d)
    rows = header_rows(page)
    assert (rows["mode"], rows["engine"], rows["rounds"], rows["ε"], rows["unit"]) == (
        "federated",
        "inprocess",
        "6",
        "3",
        "user",
    )
    assert "optimizer steps" not in rows and "target ε" not in rows  # only what the record says
    assert "Accuracy of held-out users at 3 of the curve's 6 points (x: rounds)" in md
    r = Fields(record, "record.json")
    assert _series(r, record["curve"], "top5") == ([2.0, 4.0, 6.0], [0.375, 0.5, 0.625])
    assert _series(r, record["curve"], "epsilon")[0] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert {p.name for p in d.glob("report_*.png")} == {"report_utility.png", "report_curve.png", "report_epsilon.png"}
    assert len(embedded_pngs(page)) == 3


def test_non_private_run_without_audit_notes_every_skipped_section(tmp_path):
    record = central_record(
        privacy={
            "mechanism": "none",
            "unit": "example",
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "sampling": None,
            "steps": 40,
        }
    )
    d = run_dir(tmp_path, record)
    md, page = report(d)
    assert header_rows(page)["ε"] == "not private (privacy.epsilon is null)"
    assert "δ" not in header_rows(page) and "accountant" not in header_rows(page)
    for note in (
        "*Skipped: ε over steps: not private (privacy.epsilon is null)*",
        "*Skipped: audit: the record has no audit section (audit=none)*",
        "*Skipped: ROC: the record has no audit section (audit=none)*",
        "*Skipped: canary exposure: the record has no audit section (audit=none)*",
        "*Skipped: claims: no claim_*.json in the run directory",
    ):
        assert note in md
    assert page.count('<p class="skipped">') == 5
    assert {p.name for p in d.glob("report_*.png")} == {"report_utility.png", "report_curve.png"}


def test_a_record_with_almost_nothing_still_reports(tmp_path):
    d = run_dir(tmp_path, {"task": "emoji"})
    md, page = report(d)
    assert header_rows(page) == {
        "task": "emoji",
        "privacy": "— (the record has no privacy section)",
        "run directory": str(d),
    }
    for note in (
        "utility vs baseline: the record has no metrics section",
        "learning curve: the record has no curve",
        "ε over steps: the record has no privacy section",
        "audit: the record has no audit section",
    ):
        assert f"*Skipped: {note}" in md
    assert not list(d.glob("report_*.png")) and "<img" not in page


def test_canary_exposure_section_says_what_the_record_lacks(tmp_path):
    d = run_dir(tmp_path, central_record(audit=canary_audit()), scores=True)
    md, page = report(d)
    assert "The record has no per-repetition exposure: every canary was repeated 10 times in 1 user(s)' data" in md
    assert "| by rank | trained hosts | 15 | 2.25 | 4.5 |" in md
    assert "| by fit | untrained hosts | 5 | 1.5 | 2.5 |" in md
    assert (d / "report_exposure.png").read_bytes().startswith(PNG_SIGNATURE)
    assert len(embedded_pngs(page)) == 5


def test_unseen_canary_exposure_is_the_mean_over_uniform_ranks():
    assert unseen_canary_exposure(1) == pytest.approx(0.5)  # ranks 1, 2: log2 2 − (0 + 1) / 2
    assert unseen_canary_exposure(3) == pytest.approx(2 - (0 + 1 + np.log2(3) + 2) / 4)
    assert unseen_canary_exposure(100_000) == pytest.approx(np.log2(np.e), abs=1e-3)


def test_recommender_report_shows_ranking_vs_popularity_and_skips_the_roc(tmp_path):
    d = run_dir(tmp_path, suggestions_record())
    md, page = report(d)
    assert "| recall@10, held-out users | 0.25 | 0.1875 |" in md
    assert "| ndcg@10, training users | 0.25 | 0.0625 |" in md
    assert "| metric | model | popularity baseline |" in md
    assert "| TPR at 1% FPR | 0.03125 | [0, 0.0625] |" in md
    assert "| gap (members − non-members) |  |  | 0.0625 | [-0.25, 0.375] |  |  |" in md
    assert "*Skipped: ROC: audit=suggestions keeps no per-user scores (no audit_scores.npz)*" in md
    assert {p.name for p in d.glob("report_*.png")} == {"report_utility.png", "report_curve.png"}
    assert_self_contained(page)


def test_a_second_report_removes_figures_it_no_longer_draws_and_leaves_no_temp_files(tmp_path):
    d = run_dir(tmp_path, central_record(audit=loss_audit()), scores=True)
    report(d)
    assert (d / "report_roc.png").exists()
    (d / "audit_scores.npz").unlink()
    md, _ = report(d)
    assert not (d / "report_roc.png").exists() and "*Skipped: ROC: no audit_scores.npz in the run directory*" in md
    assert not [p for p in d.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    d = run_dir(tmp_path, central_record())
    before = sorted(p.name for p in d.iterdir())
    real, calls = tempfile.mkstemp, []  # sandbox.io's writer takes a temp name per file

    def failing_mkstemp(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", failing_mkstemp)
    assert main([str(d)]) == 3
    assert sorted(p.name for p in d.iterdir()) == before


def _bad(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """A bad run directory (or path) and the file the error must name."""
    if case == "missing directory":
        return tmp_path / "nope", tmp_path / "nope"
    d = run_dir(tmp_path, central_record(audit=loss_audit()), name="bad")
    record = d / "record.json"
    if case == "a file, not a directory":
        return record, record
    if case == "no record.json":
        record.unlink()
    elif case == "record.json not JSON":
        record.write_text('{"task": "emoji", ', encoding="utf-8")
    elif case == "record.json not an object":
        record.write_text("[1, 2]", encoding="utf-8")
    elif case == "curve not a list":
        record.write_text(json.dumps(central_record(curve={"step": 1})), encoding="utf-8")
    elif case == "ε not a number":
        record.write_text(json.dumps(central_record(privacy={"epsilon": "2.5"})), encoding="utf-8")
    elif case == "claim json malformed":
        (d / "claim_x.json").write_text("{not json", encoding="utf-8")
        return d, d / "claim_x.json"
    elif case == "scores file corrupt":
        (d / "audit_scores.npz").write_bytes(b"PK\x03\x04 not a zip")
        return d, d / "audit_scores.npz"
    return d, record


BAD = [
    "missing directory",
    "a file, not a directory",
    "no record.json",
    "record.json not JSON",
    "record.json not an object",
    "curve not a list",
    "ε not a number",
    "claim json malformed",
    "scores file corrupt",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_3_naming_the_file_and_writes_nothing(tmp_path, capsys, case):
    target, named = _bad(tmp_path, case)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main([str(target)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(named) in err and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    with pytest.raises(ReportError):
        make_report(target)


def test_cli_bad_input_has_no_traceback(tmp_path):
    target, named = _bad(tmp_path, "record.json not JSON")
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.report", str(target)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith(f"error: {named}: not a readable JSON run record") and "Traceback" not in done.stderr
    assert sorted(p.name for p in target.iterdir()) == ["record.json"]


def test_report_of_a_real_tiny_run(tmp_path):
    """A tiny DP-SGD run audited by the loss attack (with its control run), then a claim, then the CLI."""
    from sandbox.claim import check_claim, write_result
    from sandbox.config import resolve
    from sandbox.run import run

    cfg = compose_config([*TINY, "privacy=dpsgd", "audit=loss"])
    out = tmp_path / "tiny"
    out.mkdir()
    record = run(resolve(cfg), out_dir=out, resolved_config=OmegaConf.to_container(cfg, resolve=True))
    write_result(check_claim("cannot-memorize", out), out)
    done = subprocess.run([sys.executable, "-m", "sandbox.report", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    rows = header_rows(page)
    p = record["privacy"]
    assert (rows["task"], rows["mode"], rows["status"], rows["seed"]) == (
        record["task"],
        record["mode"],
        record["status"],
        str(record["seed"]),
    )
    assert (rows["ε"], rows["δ"], rows["unit"], rows["accountant"], rows["sampling"]) == (
        f"{p['epsilon']:.4g}",
        f"{p['delta']:.4g}",
        p["unit"],
        p["accountant"],
        p["sampling"],
    )
    assert {q.name for q in out.glob("report_*.png")} == ALL_FIGURES - {"report_exposure.png"}
    assert len(embedded_pngs(page)) == 4
    assert_self_contained(page)
    claim = json.loads((out / "claim_cannot-memorize.json").read_text(encoding="utf-8"))
    assert f"cannot-memorize: {claim['verdict']}</h3>" in page
