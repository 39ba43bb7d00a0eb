"""Claims (`sandbox.claim`): claim files, every verdict path, the CLI's exit codes, the pytest helper.

Most records here are hand-written dicts shaped like what `sandbox.run` writes (harness audits
flat in `audit`, `audit=suggestions` under `audit.membership` / `audit.attribute`), with an ε that
recomputes from its events and a positive control whose own audit (`audit.control.audit`) leaks,
so that each audit row discriminates; one test checks a claim against a real tiny run's record.
The record checks (impossible or stale records) are in test_claim_records.py, the control rules
in test_claim_controls.py.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from sandbox.claim import (
    CLAIM_DIR,
    FAIL,
    INCONCLUSIVE,
    NOT_MEASURED,
    PASS,
    Claim,
    ClaimError,
    assert_claim,
    check_claim,
    load_claim,
)
from sandbox.claim.checks import (
    AttributeAdvantage,
    CanaryExposure,
    Epsilon,
    Extraction,
    MembershipAUC,
    MembershipTPR,
)
from sandbox.privacy import SubsampledGaussianEvent, epsilon_for, noise_multiplier_for
from sandbox.record import model_fingerprint
from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent

CONTROL_FAILED_REASON = "positive control failed: without DP the attack's TPR at 1% FPR is 0.009"


@functools.cache
def _events(epsilon: float, delta: float, accountant: str) -> tuple[str, float]:
    """Events (as JSON) of a subsampled Gaussian whose ε at δ is just under ``epsilon``, and that ε."""
    q, steps = 0.05, 100
    sigma = noise_multiplier_for(
        target_epsilon=epsilon, delta=delta, sample_rate=q, steps=steps, accountant=accountant, epsilon_tolerance=0.002
    )
    events = [SubsampledGaussianEvent(noise_multiplier=sigma, sample_rate=q, steps=steps)]
    return json.dumps([asdict(e) for e in events]), epsilon_for(events=events, delta=delta, accountant=accountant)


def privacy(
    epsilon: float | None = 0.95,
    *,
    delta: float = 1e-6,
    accountant: str = "rdp",
    mechanism: str = "dpfedavg",
    unit: str = "user",
    noise_source: str | None = "secure",
) -> dict:
    """A ``privacy`` section shaped like ``sandbox.record.privacy_section``, whose ε recomputes from
    its events (so a claim accepts it); ``epsilon=None``: not private. ``noise_source=None``:
    the key is absent (a record written before secure noise)."""
    if epsilon is None:
        return {
            "mechanism": "none",
            "unit": unit,
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "noise_multiplier": None,
            "sample_rate": None,
            "sampling": None,
            "steps": 100,
            "clip_norm": None,
            "neighbouring_relation": None,
            "events": [],
        }
    events, eps = _events(epsilon, delta, accountant)
    events = json.loads(events)
    section = {
        "mechanism": mechanism,
        "unit": unit,
        "epsilon": eps,
        "delta": delta,
        "accountant": accountant,
        "noise_multiplier": events[0]["noise_multiplier"],
        "sample_rate": 0.05,
        "sampling": "poisson",
        "steps": 100,
        "clip_norm": 1.0,
        "target_epsilon": epsilon,
        "neighbouring_relation": f"add/remove one {unit}",
        "noise_source": noise_source,
        "events": events,
    }
    if noise_source is None:
        del section["noise_source"]
    return section


def control(
    audit: dict | None, *, ran_on: str = "control run", passed: bool = True, pipeline: str = "federated, no DP"
) -> dict:
    """``audit.control`` as the harness writes it, with the control's own audit section (``audit``)."""
    section = {
        "ran_on": ran_on,
        "pipeline": pipeline,
        "privacy": "none",
        "passed": passed,
        "tpr_floor": 0.02,
        "reason": "control caught members: TPR at 1% FPR 0.153, CI from 0.120 > 0.02"
        if passed
        else CONTROL_FAILED_REASON,
    }
    if audit is not None:
        section["audit"] = audit
    return section


# The non-private model of the same pipeline, attacked the same way: it leaks (FAILs every bound below).
LIRA_CONTROL_AUDIT = {
    "attack": "lira",
    "level": "user",
    "auc": 0.871,
    "auc_ci": [0.859, 0.882],
    "tpr_at_0.1pct_fpr": 0.061,
    "tpr_at_0.1pct_fpr_ci": [0.040, 0.080],
    "tpr_at_1pct_fpr": 0.153,
    "tpr_at_1pct_fpr_ci": [0.120, 0.190],
    "n_members": 4390,
    "n_nonmembers": 1107,
    "result": "measured",
}
CANARY_CONTROL_AUDIT = {
    "attack": "canary",
    "level": "user",
    "auc": 0.97,
    "auc_ci": [0.95, 0.99],
    "tpr_at_0.1pct_fpr": 0.6,
    "tpr_at_0.1pct_fpr_ci": [0.5, 0.7],
    "tpr_at_1pct_fpr": 0.8,
    "tpr_at_1pct_fpr_ci": [0.7, 0.9],
    "n_members": 85,
    "n_nonmembers": 1015,
    "result": "measured",
    "canaries": {
        "planted": 100,
        "planted_in_trained_users": 85,
        "fresh": 1000,
        "exposure_by_rank": {
            "trained_hosts": {"n": 85, "mean": 8.3, "max": 9.967},
            "untrained_hosts": {"n": 15, "mean": 1.4, "max": 4.1},
        },
        "exposure_by_fit": {
            "trained_hosts": {"n": 85, "mean": 11.8, "max": 19.5},
            "untrained_hosts": {"n": 15, "mean": 1.5, "max": 4.6},
        },
        "max_exposure_possible_by_rank": 9.967,
    },
    "extraction": {"n_canaries": 120, "n_extracted": 37},
}
SUGGESTIONS_CONTROL_AUDIT = {
    "attack": "suggestions",
    "level": "user",
    "result": "measured",
    "membership": {
        "auc": 0.62,
        "auc_ci": [0.60, 0.64],
        "tpr_at_fpr": {"0.001": 0.02, "0.01": 0.05},
        "tpr_at_fpr_ci": {"0.001": [0.01, 0.03], "0.01": [0.03, 0.07]},
        "n_members": 8000,
        "n_nonmembers": 2000,
    },
    "attribute": {
        "name": "seeking",
        "result": "measured",
        "members": {"advantage": 0.31, "advantage_ci": [0.26, 0.36]},
        "non_members": {"advantage": 0.19, "advantage_ci": [0.12, 0.26]},
        "gap": 0.12,
        "gap_ci": [0.08, 0.16],
    },
}
CONTROL_OK = control(LIRA_CONTROL_AUDIT)


def base_record(**keys) -> dict:
    """What every run record has besides its privacy and audit (``sandbox.record.RunRecord``'s
    required keys), with small made-up values; ``keys`` replace them."""
    return {
        "schema_version": 1,
        "task": "emoji",
        "mode": "federated",
        "engine": "inprocess",
        "seed": 0,
        "status": "completed",
        "config": {},
        "versions": {"python": "3.11", "torch": "2.13.0", "opacus": None, "flwr": None, "sandbox": None},
        "data": {
            "n_users": 6000,
            "n_workspaces": 40,
            "n_messages": 90000,
            "n_examples": 60000,
            "n_test_examples": 15000,
            "n_train_users": 4390,
            "n_test_users": 1107,
            "n_opted_out_users": 503,
            "n_opted_out_workspaces": 2,
            "n_canaries": 0,
            "n_classes": 40,
            "fingerprint": "f" * 64,
        },
        "model": {"sha256": "0" * 64, "file": "model.pt"},
        "privacy": privacy(None),
        "metrics": {"top1": 0.2, "top5": 0.4, "baseline": {"top1": 0.15, "top5": 0.39}, "split": "held-out users"},
        "curve": [],
        "timing": {"seconds": 1.0, "peak_rss_mb": 400.0},
        **keys,
    }


def lira_record(**audit) -> dict:
    """A user-level DP-FedAvg run (ε just under 0.95, secure noise) audited by LiRA at user level,
    near chance; its positive control (the same pipeline without DP) leaks and passed."""
    return {
        **base_record(),
        "task": "emoji",
        "status": "completed",
        "privacy": privacy(0.95),
        "audit": {
            "attack": "lira",
            "level": "user",
            "threat": "scores",
            "auc": 0.51,
            "auc_ci": [0.49, 0.53],
            "tpr_at_0.1pct_fpr": 0.002,
            "tpr_at_0.1pct_fpr_ci": [0.0, 0.004],
            "tpr_at_1pct_fpr": 0.010,
            "tpr_at_1pct_fpr_ci": [0.005, 0.015],
            "n_members": 4390,
            "n_nonmembers": 1107,
            "control": copy.deepcopy(CONTROL_OK),
            "result": "measured",
            "reason": "control caught members",
            **audit,
        },
    }


def canary_record(**trained_hosts) -> dict:
    record = lira_record(attack="canary", control=control(copy.deepcopy(CANARY_CONTROL_AUDIT)))
    record["audit"]["canaries"] = {
        "planted": 100,
        "planted_in_trained_users": 85,
        "fresh": 1000,
        "exposure_by_rank": {
            "trained_hosts": {"n": 85, "mean": 1.5, "max": 6.1, **trained_hosts},
            "untrained_hosts": {"n": 15, "mean": 1.3, "max": 4.0},
        },
        "exposure_by_fit": {
            "trained_hosts": {"n": 85, "mean": 1.7, "max": 7.2},
            "untrained_hosts": {"n": 15, "mean": 1.4, "max": 4.4},
        },
        "max_exposure_possible_by_rank": 9.967,
    }
    return record


def suggestions_record(*, with_control: bool = True) -> dict:
    """Shaped like `audit=suggestions` (sandbox.audit.recsys), nested sections; its control (the
    same attack on the pipeline without DP) finds members and the attribute. ``with_control=False``:
    as written before suggestions audits had a control."""
    record = {
        **base_record(),
        "task": "jobs",
        "status": "completed",
        "privacy": privacy(3.9, delta=1e-5),
        "audit": {
            "attack": "suggestions",
            "level": "user",
            "threat": "top-10 list shown to the user",
            "result": "measured",
            "membership": {
                "auc": 0.52,
                "auc_ci": [0.50, 0.54],
                "tpr_at_fpr": {"0.001": 0.003, "0.01": 0.012},
                "tpr_at_fpr_ci": {"0.001": [0.0, 0.006], "0.01": [0.006, 0.019]},
                "n_members": 8000,
                "n_nonmembers": 2000,
            },
            "attribute": {
                "name": "seeking",
                "result": "measured",
                "members": {"advantage": 0.20, "advantage_ci": [0.15, 0.25]},
                "non_members": {"advantage": 0.19, "advantage_ci": [0.12, 0.26]},
                "gap": 0.01,
                "gap_ci": [-0.03, 0.04],
            },
        },
    }
    if with_control:
        record["audit"]["control"] = control(copy.deepcopy(SUGGESTIONS_CONTROL_AUDIT))
    return record


def model_state(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"embed.weight": torch.randn(4, 3, generator=generator), "head.bias": torch.zeros(2)}


def run_dir_with(tmp_path: Path, record: dict, name: str = "run", *, model_seed: int = 0) -> Path:
    """A run directory as `sandbox.run` leaves it: record.json and the model.pt whose fingerprint it records."""
    run = tmp_path / name
    run.mkdir()
    state = model_state(model_seed)
    torch.save(state, run / "model.pt")
    record = {**record, "model": {"sha256": model_fingerprint(state), "file": "model.pt"}}
    (run / "record.json").write_text(json.dumps(record))
    return run


def judge(check, record: dict, *, require_control: bool = True):
    """The one evidence row of a one-check claim, and the overall verdict."""
    claim = Claim(name="t", promise="p", checks=(check,), path="test", require_control=require_control)
    result = check_claim(claim, record)
    assert len(result.evidence) == 1
    return result.evidence[0], result.verdict


# --- claim files --------------------------------------------------------------------------------


def test_shipped_claims_parse_with_the_stated_thresholds():
    memorize = load_claim("cannot-memorize")
    assert memorize.name == "cannot-memorize" and "memorize" in memorize.promise
    assert MembershipTPR(max=0.02, fpr=0.01, level="user") in memorize.checks
    assert Epsilon(max=1.0, delta=1e-5, unit="user") in memorize.checks
    assert Extraction(max_extracted=0, min_canaries=100) in memorize.checks
    assert any(isinstance(c, CanaryExposure) for c in memorize.checks)
    assert memorize.require_control is True
    anonymized = load_claim(CLAIM_DIR / "anonymized-aggregated.yaml")
    assert anonymized.require_control is True  # suggestions audits now record a control: no exemption
    assert set(anonymized.checks) == {
        MembershipAUC(max=0.55, level="user"),
        AttributeAdvantage(max=0.05, field="gap"),
        Epsilon(max=4.0, delta=1e-5, unit="user"),
    }


def test_claim_by_path_equals_claim_by_name():
    by_name = load_claim("anonymized-aggregated")
    by_path = load_claim(str(CLAIM_DIR / "anonymized-aggregated.yaml"))
    assert by_name.checks == by_path.checks and by_name.name == by_path.name


GOOD = "name: t\npromise: p\nchecks:\n"


@pytest.mark.parametrize(
    "text, key",
    [
        ("name: t\nchecks: [\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("promise: p\nchecks: [{type: epsilon, max: 1, delta: 1.0e-5}]\n", "name: missing"),
        ("name: t\nchecks: [{type: epsilon, max: 1, delta: 1.0e-5}]\n", "promise: missing"),
        ("name: t\npromise: p\n", "checks: missing"),
        (GOOD + "  []\n", "checks: missing or empty"),
        (GOOD + "  - {type: epsilon, max: 1, delta: 1.0e-5}\nowner: me\n", "owner: unknown key"),
        ("name: ../evil\npromise: p\nchecks: [{type: epsilon, max: 1, delta: 1.0e-5}]\n", "name: letters"),
        (GOOD + "  - {max: 0.02}\n", "checks[0].type: missing"),
        (GOOD + "  - {type: membership_leak, max: 0.02}\n", "checks[0].type: unknown check 'membership_leak'"),
        (
            GOOD + "  - {type: epsilon, max: 1, delta: 1.0e-5}\n  - {type: membership_tpr, fpr: 0.01}\n",
            "checks[1] (membership_tpr).max: missing",
        ),
        (GOOD + "  - {type: epsilon, max: 1}\n", "checks[0] (epsilon).delta: missing"),
        (GOOD + "  - {type: membership_auc, mx: 0.55}\n", "checks[0] (membership_auc).mx: unknown key"),
        (GOOD + "  - {type: membership_auc, max: 0.55, level: users}\n", "(membership_auc).level: must be one of"),
        (GOOD + "  - {type: membership_auc, max: low}\n", "checks[0] (membership_auc).max: must be a number"),
        (GOOD + "  - {type: membership_auc, max: true}\n", "checks[0] (membership_auc).max: must be a number"),
        (
            GOOD + "  - {type: membership_tpr, max: 0.02, fpr: 1.5}\n",
            "checks[0] (membership_tpr).fpr: must be in (0, 1)",
        ),
        (GOOD + "  - {type: epsilon, max: 1, delta: 0}\n", "checks[0] (epsilon).delta: must be in (0, 1)"),
        (GOOD + "  - {type: extraction, min_canaries: 2.5}\n", "checks[0] (extraction).min_canaries: must be a whole"),
        (GOOD + "  - epsilon\n", "checks[0]: each check must be a mapping"),
        (
            GOOD + "  - {type: epsilon, max: 1, delta: 1.0e-5}\nrequire_control: maybe\n",
            "require_control: must be true",
        ),
    ],
)
def test_malformed_claim_names_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad-claim.yaml"
    path.write_text(text)
    with pytest.raises(ClaimError) as err:
        load_claim(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_yaml_exponent_without_dot_is_a_number_as_in_hydra(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "  - {type: epsilon, max: 1, delta: 1e-5}\n")
    assert load_claim(path).checks == (Epsilon(max=1.0, delta=1e-5),)


def test_unknown_claim_name_or_missing_path_is_an_error():
    with pytest.raises(ClaimError, match="no-such-claim.*known: .*cannot-memorize"):
        load_claim("no-such-claim")
    with pytest.raises(ClaimError, match="missing/c.yaml: claim file not found"):
        load_claim("missing/c.yaml")


# --- verdicts: CI checks ------------------------------------------------------------------------


def test_membership_tpr_passes_on_the_upper_ci_end():
    row, verdict = judge(MembershipTPR(max=0.02), lira_record())
    assert (row.verdict, verdict) == (PASS, PASS)
    assert row.measured == 0.010 and row.ci == (0.005, 0.015)
    # ...because its control (no DP, same pipeline) fails the same bound: the row discriminates
    assert row.discriminates is True and row.control == "TPR 0.153 [0.120, 0.190]: FAIL"


def test_membership_tpr_fails_when_the_whole_ci_is_above():
    # README: central, not private, LiRA at user level: 0.053 [0.023, 0.108]
    row, verdict = judge(
        MembershipTPR(max=0.02), lira_record(**{"tpr_at_1pct_fpr": 0.053, "tpr_at_1pct_fpr_ci": [0.023, 0.108]})
    )
    assert (row.verdict, verdict) == (FAIL, FAIL)


@pytest.mark.parametrize("point, ci", [(0.01, [0.0, 0.05]), (0.03, [0.015, 0.05])])
def test_ci_straddling_the_bound_is_inconclusive(point, ci):
    # point below or above the bound: either way the CI is too wide to decide
    row, verdict = judge(MembershipTPR(max=0.02), lira_record(**{"tpr_at_1pct_fpr": point, "tpr_at_1pct_fpr_ci": ci}))
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE)
    assert "too wide" in row.reason


def test_membership_tpr_reads_the_stated_fpr():
    row, _ = judge(MembershipTPR(max=0.005, fpr=0.001), lira_record())
    assert row.measured == 0.002 and row.ci == (0.0, 0.004) and row.verdict == PASS
    row, _ = judge(MembershipTPR(max=0.005, fpr=0.05), lira_record())
    assert row.verdict == INCONCLUSIVE and row.reason.startswith(NOT_MEASURED)


def test_failed_positive_control_makes_a_pass_inconclusive():
    weak = {**LIRA_CONTROL_AUDIT, "tpr_at_1pct_fpr": 0.009, "tpr_at_1pct_fpr_ci": [0.0, 0.02]}
    record = lira_record(result="inconclusive", reason=CONTROL_FAILED_REASON, control=control(weak, passed=False))
    row, verdict = judge(MembershipTPR(max=0.02), record)
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE)
    assert CONTROL_FAILED_REASON in row.reason


def test_failed_positive_control_does_not_hide_leakage_found():
    record = lira_record(result="inconclusive", reason=CONTROL_FAILED_REASON, auc=0.70, auc_ci=[0.65, 0.75])
    row, verdict = judge(MembershipAUC(max=0.55), record)
    assert (row.verdict, verdict) == (FAIL, FAIL)


def test_dp_bug_audit_fails_its_checks_and_epsilon():
    record = lira_record(result="dp_bug", reason="empirical ε lower bound exceeds the accountant's ε")
    record["status"] = "failed"
    row, verdict = judge(MembershipAUC(max=0.55), record)  # the AUC CI alone would pass
    assert (row.verdict, verdict) == (FAIL, FAIL) and "dp_bug" in row.reason
    row, verdict = judge(Epsilon(max=1.0, delta=1e-5), record)  # ε = 0.95 alone would pass
    assert (row.verdict, verdict) == (FAIL, FAIL) and "dp_bug" in row.reason


def test_cli_exits_4_on_a_dp_bug_and_still_writes_the_verdict(tmp_path):
    """A record whose audit found a probable DP bug: every row FAILs, and the exit code says why (sandbox.cli)."""
    record = lira_record(result="dp_bug", reason="empirical ε lower bound exceeds the accountant's ε")
    record["status"] = "failed"
    run = run_dir_with(tmp_path, record)
    proc = claim_cli("cannot-memorize", run)
    assert proc.returncode == 4, proc.stderr
    assert json.loads((run / "claim_cannot-memorize.json").read_text())["verdict"] == FAIL
    assert check_claim("cannot-memorize", run).exit_code == 4
    plain = check_claim("cannot-memorize", lira_record())  # no DP bug: the verdict's own code
    assert not plain.dp_bug and plain.exit_code == {PASS: 0, FAIL: 1, INCONCLUSIVE: 2}[plain.verdict]


@pytest.mark.parametrize(
    "record, why",
    [
        (base_record(privacy=privacy(0.95)), "no audit section"),
        (lira_record(level="example"), "at example level, not user"),
        (canary_record(), "canary membership at canary level, not user"),
    ],
)
def test_membership_not_measured_at_the_stated_level_is_inconclusive(record, why):
    for check in (MembershipTPR(max=0.02), MembershipAUC(max=0.55)):
        row, verdict = judge(check, record)
        assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE)
        assert row.reason.startswith(NOT_MEASURED) and why in row.reason and row.measured is None


def test_suggestions_audit_membership_is_read_from_its_section():
    record = suggestions_record()
    row, _ = judge(MembershipAUC(max=0.55), record)
    assert (row.measured, row.ci, row.verdict) == (0.52, (0.50, 0.54), PASS)
    assert row.control == "AUC 0.620 [0.600, 0.640]: FAIL" and row.discriminates is True
    row, _ = judge(MembershipTPR(max=0.02, fpr=0.01), record)
    assert (row.measured, row.ci, row.verdict) == (0.012, (0.006, 0.019), PASS)
    row, _ = judge(MembershipTPR(max=0.005, fpr=0.001), record)
    assert (row.measured, row.ci) == (0.003, (0.0, 0.006))


@pytest.mark.parametrize("check", [MembershipAUC(max=0.55), AttributeAdvantage(max=0.05)])
def test_audit_without_a_control_cannot_pass_unless_the_claim_waives_it(check):
    record = suggestions_record(with_control=False)  # as written before suggestions audits had a control
    row, verdict = judge(check, record)
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE)
    assert row.reason.startswith("no control on this statistic: this audit records no positive control")
    assert (row.control, row.discriminates) == ("none", None)
    waived, verdict = judge(check, record, require_control=False)
    assert (waived.verdict, verdict) == (PASS, PASS)
    assert "(no discriminating control: require_control: false" in waived.reason
    failing = suggestions_record(with_control=False)  # ...and the leakage it finds still fails
    failing["audit"]["membership"].update(auc=0.7, auc_ci=[0.65, 0.75])
    failing["audit"]["attribute"].update(gap=0.2, gap_ci=[0.1, 0.3])
    assert judge(check, failing)[0].verdict == FAIL


def test_attribute_advantage_field_selects_gap_or_members():
    record = suggestions_record()
    gap, _ = judge(AttributeAdvantage(max=0.05, field="gap"), record)
    assert (gap.measured, gap.ci, gap.verdict) == (0.01, (-0.03, 0.04), PASS)
    assert gap.control == "gap 0.120 [0.080, 0.160]: FAIL"
    members, verdict = judge(AttributeAdvantage(max=0.05, field="members"), record)
    assert (members.measured, members.ci, members.verdict, verdict) == (0.20, (0.15, 0.25), FAIL, FAIL)


def test_attribute_not_measured_or_too_few_is_inconclusive():
    row, _ = judge(AttributeAdvantage(max=0.05), lira_record())
    assert row.verdict == INCONCLUSIVE and row.reason.startswith(NOT_MEASURED)
    record = suggestions_record()
    record["audit"]["attribute"] = {"name": "seeking", "result": "too_few", "reason": "fewer than 5 reference users"}
    row, verdict = judge(AttributeAdvantage(max=0.05), record)
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE) and "too_few" in row.reason


# --- verdicts: canary exposure and extraction ---------------------------------------------------


@pytest.mark.parametrize(
    "check, trained, verdict, why",
    [
        (CanaryExposure(max=2.5, min_canaries=50), {}, PASS, "1.50 bits ≤ 2.5"),  # the control: 8.30 bits
        (CanaryExposure(max=2.5, min_canaries=50), {"mean": 8.3}, FAIL, "8.30 bits > 2.5"),
        (CanaryExposure(max=2.5, min_canaries=50), {"n": 9, "mean": 9.0}, INCONCLUSIVE, "needs ≥ 50"),
        (CanaryExposure(max=7.0, statistic="max"), {}, PASS, "6.10 bits"),
        (CanaryExposure(max=7.0, statistic="max", method="fit"), {}, FAIL, "7.20 bits"),
        (CanaryExposure(max=10.5), {}, INCONCLUSIVE, "cannot measure above 9.97"),
        (CanaryExposure(max=10.5, method="fit"), {}, PASS, "1.70 bits"),  # the control by fit: 11.8 bits
    ],
)
def test_canary_exposure(check, trained, verdict, why):
    row, overall = judge(check, canary_record(**trained))
    assert (row.verdict, overall) == (verdict, verdict) and why in row.reason


def test_canary_exposure_not_measured_without_a_canary_audit():
    row, verdict = judge(CanaryExposure(max=2.5), lira_record())
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE) and row.reason.startswith(NOT_MEASURED)


def test_extraction_absent_is_inconclusive_not_measured():
    row, verdict = judge(Extraction(max_extracted=0, min_canaries=100), canary_record())
    assert (row.verdict, verdict, row.reason) == (INCONCLUSIVE, INCONCLUSIVE, NOT_MEASURED)


@pytest.mark.parametrize("extracted, tried, verdict", [(0, 120, PASS), (1, 120, FAIL), (0, 10, INCONCLUSIVE)])
def test_extraction_when_recorded(extracted, tried, verdict):
    record = canary_record()
    record["audit"]["extraction"] = {"n_canaries": tried, "n_extracted": extracted}
    row, overall = judge(Extraction(max_extracted=0, min_canaries=100), record)
    assert (row.verdict, overall, row.measured) == (verdict, verdict, extracted)


# --- verdicts: epsilon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, verdict, why",
    [
        (privacy(0.95), PASS, f"ε = {privacy(0.95)['epsilon']:.3f} ≤ 1"),
        (privacy(0.95, delta=1e-5), PASS, "δ = 1e-05"),  # equal to the stated δ
        (privacy(0.95, mechanism="dpsgd", unit="example"), FAIL, "ε is example-level; a user-level claim"),
        (privacy(0.95, mechanism="client_dpsgd", unit="example"), FAIL, "ε is example-level"),
        (privacy(0.95, unit="workspace"), FAIL, "ε is workspace-level"),
        (privacy(0.95, delta=1e-4), FAIL, "not ≤ the stated δ"),
        (privacy(1.2), FAIL, f"ε = {privacy(1.2)['epsilon']:.3f} > 1"),
        (privacy(None), FAIL, "not private"),
        (privacy(0.95, accountant="gdp"), INCONCLUSIVE, "CLT approximation"),
        (privacy(0.95, noise_source="seeded"), FAIL, "seeded noise (research mode)"),
        (privacy(0.95, noise_source=None), FAIL, "does not state its noise source"),
    ],
)
def test_epsilon(section, verdict, why):
    record = lira_record()
    record["privacy"] = section
    row, overall = judge(Epsilon(max=1.0, delta=1e-5, unit="user"), record)
    assert (row.verdict, overall) == (verdict, verdict) and why in row.reason
    assert (row.control, row.discriminates) == ("—", None)  # a guarantee, not a measurement: no control


def test_overall_fail_beats_inconclusive_beats_pass():
    record = lira_record(**{"tpr_at_1pct_fpr_ci": [0.0, 0.05]})  # TPR check: too wide
    claim = Claim(
        name="t",
        promise="p",
        path="test",
        checks=(MembershipAUC(max=0.55), MembershipTPR(max=0.02), Epsilon(max=1.0, delta=1e-5)),
    )
    assert [e.verdict for e in check_claim(claim, record).evidence] == [PASS, INCONCLUSIVE, PASS]
    assert check_claim(claim, record).verdict == INCONCLUSIVE
    record["privacy"] = privacy(3.0)
    assert check_claim(claim, record).verdict == FAIL


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda r: r["audit"].pop("auc_ci"), "audit.auc_ci: missing"),
        (lambda r: r["audit"].update(auc="high"), "audit.auc: expected a number"),
        (lambda r: r.pop("privacy"), "privacy: missing"),  # the typed record (sandbox.record) names the section
        (lambda r: r["audit"].pop("result"), "audit.result: missing"),
    ],
)
def test_malformed_record_names_the_key(edit, key):
    record = lira_record()
    edit(record)
    claim = Claim(name="t", promise="p", path="test", checks=(MembershipAUC(max=0.55), Epsilon(max=1, delta=1e-5)))
    with pytest.raises(ClaimError, match=key.replace(".", r"\.")):
        check_claim(claim, record)


# --- files, the CLI, the pytest helper ---------------------------------------------------------


def claim_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.claim", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_check_claim_reads_a_run_dir_a_record_path_or_a_dict(tmp_path):
    record = suggestions_record()
    run = run_dir_with(tmp_path, record)
    results = [check_claim("anonymized-aggregated", x) for x in (run, run / "record.json", record)]
    assert {r.verdict for r in results} == {PASS}
    assert results[0].evidence == results[1].evidence == results[2].evidence
    assert any("model.sha256 matches model.pt" in line for line in results[0].record_checks)
    assert any("model.sha256 not verified" in line for line in results[2].record_checks)  # a dict has no model.pt
    assert sorted(p.name for p in run.iterdir()) == ["model.pt", "record.json"]  # check_claim writes nothing


@pytest.mark.parametrize("epsilon, code, verdict", [(3.9, 0, PASS), (4.5, 1, FAIL), (None, 2, INCONCLUSIVE)])
def test_cli_exit_code_per_verdict_and_claim_json(tmp_path, epsilon, code, verdict):
    record = suggestions_record()
    if epsilon is None:
        record["audit"]["membership"]["auc_ci"] = [0.50, 0.60]  # straddles 0.55
    else:
        record["privacy"] = privacy(epsilon, delta=1e-5)
    run = run_dir_with(tmp_path, record)
    proc = claim_cli("anonymized-aggregated", run)
    assert proc.returncode == code, proc.stderr
    assert f"verdict: {verdict}" in proc.stdout and "membership AUC (user)" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("check "))
    assert header.split() == ["check", "measured", "CI", "bound", "verdict", "control", "reason"]
    assert "AUC 0.620 [0.600, 0.640]: FAIL" in proc.stdout and "record check:" in proc.stdout
    written = json.loads((run / "claim_anonymized-aggregated.json").read_text())
    assert written["verdict"] == verdict and written["name"] == "anonymized-aggregated"
    assert [row["check"] for row in written["evidence"]] == [
        "membership AUC (user)",
        "attribute advantage, gap",
        "ε (user level)",
    ]
    assert [(row["control"], row["discriminates"]) for row in written["evidence"]] == [
        ("AUC 0.620 [0.600, 0.640]: FAIL", True),
        ("gap 0.120 [0.080, 0.160]: FAIL", True),
        ("—", None),
    ]
    assert any("model.sha256 matches" in line for line in written["record_checks"])
    assert sorted(p.name for p in run.iterdir()) == ["claim_anonymized-aggregated.json", "model.pt", "record.json"]


def _bad_cases(tmp_path: Path):
    good = run_dir_with(tmp_path, suggestions_record(), "good")
    broken = copy.deepcopy(suggestions_record())
    del broken["audit"]["membership"]["auc_ci"]
    bad_record = run_dir_with(tmp_path, broken, "bad-record")
    (tmp_path / "empty").mkdir()
    claims = {
        "malformed.yaml": "name: x\nchecks: [\n",
        "unknown.yaml": GOOD + "  - {type: leakage, max: 1}\n",
        "nokey.yaml": GOOD + "  - {type: membership_auc, level: user}\n",
    }
    for name, text in claims.items():
        (tmp_path / name).write_text(text)
    return {
        "missing claim": ((tmp_path / "absent.yaml", good), ["absent.yaml", "not found"]),
        "malformed yaml": ((tmp_path / "malformed.yaml", good), ["malformed.yaml", "not valid YAML"]),
        "unknown check": ((tmp_path / "unknown.yaml", good), ["unknown.yaml", "checks[0].type", "leakage"]),
        "missing key": ((tmp_path / "nokey.yaml", good), ["nokey.yaml", "(membership_auc).max: missing"]),
        "no run dir": (("anonymized-aggregated", tmp_path / "nowhere"), ["nowhere", "record.json: missing"]),
        "no record": (("anonymized-aggregated", tmp_path / "empty"), ["empty", "record.json: missing"]),
        "record key": (("anonymized-aggregated", bad_record), ["record.json", "audit.membership.auc_ci: missing"]),
    }


@pytest.mark.parametrize(
    "case", ["missing claim", "malformed yaml", "unknown check", "missing key", "no run dir", "no record", "record key"]
)
def test_cli_bad_input_exits_3_without_traceback_or_output_file(tmp_path, case):
    args, expected = _bad_cases(tmp_path)[case]
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    proc = claim_cli(*args)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert all(text in proc.stderr for text in expected), proc.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert proc.stdout == ""


def test_cli_usage_error_exits_3_not_inconclusive():
    proc = claim_cli("cannot-memorize")
    assert proc.returncode == 3 and "run_dir" in proc.stderr and "Traceback" not in proc.stderr


def test_assert_claim_returns_on_pass_and_raises_with_the_evidence_table():
    assert assert_claim("anonymized-aggregated", suggestions_record()).verdict == PASS
    failing = suggestions_record()
    failing["privacy"] = privacy(3.9, delta=1e-5, mechanism="dpsgd", unit="example")
    with pytest.raises(AssertionError) as err:
        assert_claim("anonymized-aggregated", failing)
    message = str(err.value)
    assert "is FAIL" in message and "verdict: FAIL" in message
    assert "ε is example-level; a user-level claim needs a user-level ε" in message
    assert "membership AUC (user)" in message and "[0.500, 0.540]" in message  # the passing rows are shown too


def test_assert_claim_inconclusive_raises_unless_allowed():
    record = suggestions_record()
    record["audit"]["attribute"]["gap_ci"] = [-0.03, 0.09]
    with pytest.raises(AssertionError, match="is INCONCLUSIVE"):
        assert_claim("anonymized-aggregated", record)
    assert assert_claim("anonymized-aggregated", record, allow_inconclusive=True).verdict == INCONCLUSIVE


def test_claim_on_a_real_tiny_run(tmp_path):
    run = tmp_path / "run"
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            *TINY,
            "privacy=none",
            "audit=loss",
            "audit.resamples=200",
            f"hydra.run.dir={run}",
            "claim=cannot-memorize",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # claim= on the run: the run completes, then the claim's verdict is its exit code (FAIL: not private)
    assert train.returncode == 1, train.stderr
    assert "verdict: FAIL" in train.stdout and (run / "record.json").exists()
    (run / "claim_cannot-memorize.json").unlink()  # the CLI below writes it again
    audit = json.loads((run / "record.json").read_text())["audit"]
    proc = claim_cli("cannot-memorize", run)
    assert proc.returncode == 1, proc.stderr  # not private: ε fails, whatever the audit says
    rows = {row["check"]: row for row in json.loads((run / "claim_cannot-memorize.json").read_text())["evidence"]}
    tpr = rows["membership TPR @ 0.01 FPR (user)"]
    assert tpr["measured"] == audit["tpr_at_1pct_fpr"] and tpr["ci"] == audit["tpr_at_1pct_fpr_ci"]
    # the rule, restated: a non-private run is its own control, so a row that passes does not discriminate
    # and it can only FAIL (whole CI above 0.02, at an FPR its non-members resolve) or be INCONCLUSIVE
    low, _ = audit["tpr_at_1pct_fpr_ci"]
    measurable = audit["n_nonmembers"] >= 100
    assert tpr["verdict"] == (FAIL if measurable and low > 0.02 else INCONCLUSIVE)
    assert tpr["discriminates"] is (True if tpr["verdict"] == FAIL else tpr["discriminates"])
    assert tpr["verdict"] != PASS and tpr["control"].startswith("TPR ")
    assert rows["ε (user level)"]["verdict"] == FAIL and "not private" in rows["ε (user level)"]["reason"]
    assert rows["canaries extracted"] == {**rows["canaries extracted"], "verdict": INCONCLUSIVE, "reason": NOT_MEASURED}
    assert rows["canary exposure, mean by rank (bits)"]["verdict"] == INCONCLUSIVE


# --- several audits of one model ----------------------------------------------------------------


def _of_model(record: dict, sha: str = "a" * 64, data: str = "d" * 64) -> dict:
    return {**record, "model": {**record["model"], "sha256": sha}, "data": {**record["data"], "fingerprint": data}}


CANNOT_MEMORIZE_LIKE = Claim(
    name="t",
    promise="p",
    path="test",
    checks=(MembershipTPR(max=0.02), CanaryExposure(max=2.5, min_canaries=50), Extraction(min_canaries=100)),
)


def _with_extraction(record: dict, extracted: int = 0, tried: int = 120) -> dict:
    record["audit"]["extraction"] = {"n_canaries": tried, "n_extracted": extracted}
    return record


def test_audits_of_one_model_combine_each_check_takes_the_strongest_evidence():
    lira, canary = lira_record(), _with_extraction(canary_record())
    alone = [check_claim(CANNOT_MEMORIZE_LIKE, _of_model(r)) for r in (lira, canary)]
    assert [a.verdict for a in alone] == [INCONCLUSIVE, INCONCLUSIVE]  # each lacks what the other measured
    assert [e.verdict for e in alone[0].evidence] == [PASS, INCONCLUSIVE, INCONCLUSIVE]
    assert [e.verdict for e in alone[1].evidence] == [INCONCLUSIVE, PASS, PASS]  # canary level is not user level
    both = check_claim(CANNOT_MEMORIZE_LIKE, [_of_model(lira), _of_model(canary)])
    assert both.verdict == PASS and [e.verdict for e in both.evidence] == [PASS, PASS, PASS]
    # a LiRA whose control failed adds no evidence: the membership row stays INCONCLUSIVE, with its reason
    weak = lira_record(result="inconclusive", reason=CONTROL_FAILED_REASON)
    undecided = check_claim(CANNOT_MEMORIZE_LIKE, [_of_model(canary), _of_model(weak)])
    assert undecided.verdict == INCONCLUSIVE and undecided.evidence[0].verdict == INCONCLUSIVE
    assert "positive control failed" in undecided.evidence[0].reason  # measured, before "not measured"
    # a FAIL in any audit of the model stands, whatever the others pass
    leaky = lira_record(**{"tpr_at_1pct_fpr": 0.06, "tpr_at_1pct_fpr_ci": [0.03, 0.09]})
    failed = check_claim(CANNOT_MEMORIZE_LIKE, [_of_model(lira), _of_model(canary), _of_model(leaky)])
    assert failed.verdict == FAIL and failed.evidence[0].verdict == FAIL


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["model"].update(sha256="b" * 64), "model.sha256 differs"),
        (lambda r: r["data"].update(fingerprint="e" * 64), "data.fingerprint differs"),
        (lambda r: r.pop("model"), "model: missing"),
    ],
)
def test_records_of_different_models_are_refused(edit, message):
    other = _of_model(canary_record())
    edit(other)
    with pytest.raises(ClaimError, match=message):
        check_claim(CANNOT_MEMORIZE_LIKE, [_of_model(lira_record()), other])


def test_cli_takes_several_run_dirs_and_writes_the_verdict_into_each(tmp_path):
    lira = run_dir_with(tmp_path, _of_model(lira_record()), "lira")  # one model.pt (seed 0) in both
    canary = run_dir_with(tmp_path, _of_model(_with_extraction(canary_record())), "canary")
    claim = tmp_path / "claim.yaml"
    claim.write_text(
        "name: t\npromise: p\nchecks:\n  - {type: membership_tpr, max: 0.02}\n"
        "  - {type: extraction, min_canaries: 100}\n"
    )
    proc = claim_cli(claim, lira, canary)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for run in (lira, canary):
        assert json.loads((run / "claim_t.json").read_text())["verdict"] == PASS
    other = run_dir_with(tmp_path, _of_model(canary_record()), "other", model_seed=1)  # another model
    proc = claim_cli(claim, lira, other)
    assert proc.returncode == 3 and "not one model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (other / "claim_t.json").exists()


def test_a_rerun_with_another_audit_is_the_same_model_and_combines(tmp_path):
    """What makes combining honest: training is deterministic, so the same config and seed with
    another audit= records the same model.sha256 (real tiny runs; a changed seed does not)."""
    runs = {}
    for name, extra in (
        ("loss", ["audit=loss"]),
        ("canary", ["audit=canary", "audit.extraction=false"]),
        ("seed", ["audit=loss", "seed=1"]),
    ):
        runs[name] = tmp_path / name
        train = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox",
                *TINY,
                "privacy=none",
                "audit.resamples=200",
                *extra,
                f"hydra.run.dir={runs[name]}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert train.returncode == 0, train.stderr
    sha = {n: json.loads((r / "record.json").read_text())["model"]["sha256"] for n, r in runs.items()}
    assert sha["loss"] == sha["canary"] != sha["seed"]
    proc = claim_cli("cannot-memorize", runs["loss"], runs["canary"])
    assert proc.returncode == 1, proc.stderr  # not private
    rows = {
        row["check"]: row for row in json.loads((runs["canary"] / "claim_cannot-memorize.json").read_text())["evidence"]
    }
    assert "canary" in rows["canary exposure, mean by rank (bits)"]["source"]  # read from the canary audit's record
    assert "loss" in rows["membership TPR @ 0.01 FPR (user)"]["source"]
    assert claim_cli("cannot-memorize", runs["loss"], runs["seed"]).returncode == 3
