"""Each row's evidence needs a control that FAILs the same check (issue 13, item 4).

The control view of a record is the record with ``audit`` replaced by ``audit.control.audit``
(the same attack on the non-private model of the same pipeline), or the record itself when the
run is not private. A row discriminates iff the control view FAILs its check; a row that would
PASS without a discriminating control is INCONCLUSIVE, FAIL stays FAIL.
"""

from __future__ import annotations

import copy
import json

import pytest

from sandbox.claim import FAIL, INCONCLUSIVE, NO_CONTROL, NOT_DISCRIMINATING, PASS, Claim, ClaimError, check_claim
from sandbox.claim.checks import (
    AttributeAdvantage,
    CanaryExposure,
    Epsilon,
    Extraction,
    MembershipAUC,
    MembershipTPR,
)
from tests.test_claim import (
    CANARY_CONTROL_AUDIT,
    LIRA_CONTROL_AUDIT,
    canary_record,
    claim_cli,
    control,
    judge,
    lira_record,
    privacy,
    run_dir_with,
    suggestions_record,
)

NEAR_CHANCE = {
    "auc": 0.52,
    "auc_ci": [0.50, 0.54],
    "tpr_at_0.1pct_fpr": 0.001,
    "tpr_at_0.1pct_fpr_ci": [0.0, 0.003],
    "tpr_at_1pct_fpr": 0.011,
    "tpr_at_1pct_fpr_ci": [0.006, 0.016],
}


def with_control_audit(record: dict, **changes) -> dict:
    record["audit"]["control"]["audit"].update(changes)
    return record


# --- the three cases the rule is about ----------------------------------------------------------


@pytest.mark.parametrize(
    "check", [MembershipAUC(max=0.55), MembershipTPR(max=0.02), MembershipTPR(max=0.005, fpr=0.001)]
)
def test_a_row_that_passes_but_whose_control_also_passes_does_not_discriminate(check):
    # the non-private model of the same pipeline is near chance too: passing says nothing about DP
    record = with_control_audit(lira_record(), **NEAR_CHANCE)
    row, verdict = judge(check, record)
    assert (row.verdict, verdict, row.discriminates) == (INCONCLUSIVE, INCONCLUSIVE, False)
    assert row.reason.startswith(
        f"{NOT_DISCRIMINATING}: a non-private model of the same pipeline also passes (control: "
    )
    assert row.control.endswith(": PASS") and "federated, no DP" in row.reason
    assert "this run: CI upper end" in row.reason  # what the run itself showed is kept


def test_a_control_that_fails_the_check_lets_the_row_pass():
    row, verdict = judge(MembershipAUC(max=0.55), lira_record())
    assert (row.verdict, verdict, row.discriminates) == (PASS, PASS, True)
    assert row.control == "AUC 0.871 [0.859, 0.882]: FAIL"
    assert row.reason == "CI upper end 0.530 ≤ 0.55; discriminates: the control (federated, no DP) fails it"


def test_a_fail_stays_fail_whatever_the_control_says():
    leaky = {"auc": 0.70, "auc_ci": [0.65, 0.75]}
    record = with_control_audit(lira_record(**leaky), **NEAR_CHANCE)  # control passes, run leaks
    row, verdict = judge(MembershipAUC(max=0.55), record)
    assert (row.verdict, verdict, row.discriminates) == (FAIL, FAIL, False)
    assert row.reason == "whole CI above 0.55: lower end 0.650" and row.control == "AUC 0.520 [0.500, 0.540]: PASS"
    no_control = lira_record(**leaky)
    del no_control["audit"]["control"]
    assert judge(MembershipAUC(max=0.55), no_control)[0].verdict == FAIL


def test_require_control_false_does_not_rescue_a_row_that_does_not_discriminate():
    record = with_control_audit(lira_record(), **NEAR_CHANCE)
    row, _ = judge(MembershipAUC(max=0.55), record, require_control=False)
    assert row.verdict == INCONCLUSIVE and row.reason.startswith(NOT_DISCRIMINATING)


def test_a_control_whose_ci_straddles_the_bound_does_not_discriminate():
    record = with_control_audit(lira_record(), auc=0.56, auc_ci=[0.53, 0.59])
    row, _ = judge(MembershipAUC(max=0.55), record)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, False)
    assert (
        row.reason.startswith(f"{NOT_DISCRIMINATING}: a non-private model of the same pipeline does not fail it either")
        and row.control == "AUC 0.560 [0.530, 0.590]: INCONCLUSIVE"
    )


# --- no control to judge ------------------------------------------------------------------------


def test_an_older_record_whose_control_ran_but_kept_no_audit_cannot_pass():
    record = lira_record()
    del record["audit"]["control"]["audit"]  # ran_on "control run": only pass/fail was recorded
    row, verdict = judge(MembershipAUC(max=0.55), record)
    assert (row.verdict, verdict, row.discriminates, row.control) == (INCONCLUSIVE, INCONCLUSIVE, None, "none")
    assert row.reason.startswith(NO_CONTROL) and "re-run the audit" in row.reason
    waived, verdict = judge(MembershipAUC(max=0.55), record, require_control=False)
    assert (waived.verdict, verdict) == (PASS, PASS)
    assert "(no discriminating control: require_control: false" in waived.reason


def test_a_statistic_the_control_did_not_measure_gives_no_control():
    # a canary control searched no secrets (extraction off): the extraction row has no control
    record = canary_record()
    record["audit"]["extraction"] = {"n_canaries": 120, "n_extracted": 0}
    del record["audit"]["control"]["audit"]["extraction"]
    row, _ = judge(Extraction(max_extracted=0, min_canaries=100), record)
    assert (row.verdict, row.discriminates, row.control) == (INCONCLUSIVE, None, "not measured")
    assert row.reason.startswith(f"{NO_CONTROL}: the control: not measured by this run")
    # exposure by rank on a control that cannot measure above the bound (too few fresh canaries)
    record = canary_record()
    record["audit"]["control"]["audit"]["canaries"]["max_exposure_possible_by_rank"] = 2.0
    record["audit"]["control"]["audit"]["canaries"]["exposure_by_rank"]["trained_hosts"]["mean"] = 1.9
    row, _ = judge(CanaryExposure(max=2.5, min_canaries=50), record)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, None) and "cannot measure above" in row.reason


def test_a_control_of_another_attack_is_no_control_on_this_statistic():
    record = lira_record(control=control(copy.deepcopy(CANARY_CONTROL_AUDIT)))  # LiRA run, canary control
    row, _ = judge(MembershipAUC(max=0.55), record)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, None)
    assert "not measured by this run: its audit is canary membership" in row.reason


def test_a_disabled_control_gives_no_control():
    record = lira_record(
        result="inconclusive",
        reason="positive control disabled (audit.control=false)",
        control={"ran_on": "none", "passed": False, "reason": "positive control disabled (audit.control=false)"},
    )
    row, _ = judge(MembershipAUC(max=0.55), record, require_control=False)
    assert row.verdict == INCONCLUSIVE and row.control == "none"  # the audit gate: inconclusive


# --- a non-private run is its own control -------------------------------------------------------


def test_a_non_private_run_is_its_own_control():
    passing = lira_record(control=control(None, ran_on="this run (not private)", pipeline="federated, no DP"))
    passing["privacy"] = privacy(None)
    row, _ = judge(MembershipAUC(max=0.55), passing)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, False)  # its own pass cannot discriminate
    assert row.control == "AUC 0.510 [0.490, 0.530]: PASS" and row.reason.startswith(NOT_DISCRIMINATING)
    leaking = copy.deepcopy(passing)
    leaking["audit"].update(auc=0.70, auc_ci=[0.65, 0.75])
    row, _ = judge(MembershipAUC(max=0.55), leaking)
    assert (row.verdict, row.discriminates) == (FAIL, True)


# --- TPR at an FPR the non-members cannot resolve -----------------------------------------------


@pytest.mark.parametrize("fpr, n_nonmembers, at_all, usable", [(0.01, 50, 100, 1000), (0.001, 500, 1000, 10000)])
def test_tpr_at_an_fpr_the_audit_cannot_measure_is_inconclusive_with_the_count_needed(
    fpr, n_nonmembers, at_all, usable
):
    record = lira_record(n_nonmembers=n_nonmembers)
    row, verdict = judge(MembershipTPR(max=0.02, fpr=fpr), record)
    assert (row.verdict, verdict) == (INCONCLUSIVE, INCONCLUSIVE)
    assert f"not measurable with {n_nonmembers} non-members" in row.reason
    assert f"≥ {at_all} non-members to be measurable at all, about {usable} for a usable CI" in row.reason
    leaky = lira_record(
        n_nonmembers=n_nonmembers,
        **{
            "tpr_at_1pct_fpr": 0.3,
            "tpr_at_1pct_fpr_ci": [0.2, 0.4],
            "tpr_at_0.1pct_fpr": 0.3,
            "tpr_at_0.1pct_fpr_ci": [0.2, 0.4],
        },
    )
    assert judge(MembershipTPR(max=0.02, fpr=fpr), leaky)[0].verdict == INCONCLUSIVE  # read at FPR 0: no FPR fpr


def test_a_control_that_cannot_measure_the_tpr_is_no_control():
    record = with_control_audit(lira_record(), n_nonmembers=60)
    row, _ = judge(MembershipTPR(max=0.02), record)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, None)
    assert row.reason.startswith(f"{NO_CONTROL}: the control: TPR at FPR 0.01 is not measurable with 60 non-members")
    assert "needs ≥ 100" in row.control and row.control.endswith("INCONCLUSIVE")


# --- shipped claims, several records, the written result ----------------------------------------


def test_anonymized_aggregated_needs_a_discriminating_control():
    assert check_claim("anonymized-aggregated", suggestions_record()).verdict == PASS
    old = check_claim("anonymized-aggregated", suggestions_record(with_control=False))  # no control, no waiver
    assert old.verdict == INCONCLUSIVE
    assert [e.verdict for e in old.evidence] == [INCONCLUSIVE, INCONCLUSIVE, PASS]
    # the finding: the non-private jobs models also meet AUC ≤ 0.55 and gap ≤ 0.05
    weak = suggestions_record()
    weak["audit"]["control"]["audit"]["membership"].update(auc=0.526, auc_ci=[0.51, 0.54])
    weak["audit"]["control"]["audit"]["attribute"].update(gap=0.02, gap_ci=[-0.01, 0.045])
    rows = check_claim("anonymized-aggregated", weak).evidence
    assert [(e.verdict, e.discriminates) for e in rows] == [(INCONCLUSIVE, False), (INCONCLUSIVE, False), (PASS, None)]


def test_each_record_of_a_model_brings_its_own_control():
    base = lira_record()
    sha = {"model": {**base["model"], "sha256": "a" * 64}, "data": {**base["data"], "fingerprint": "d" * 64}}
    discriminating = {**lira_record(), **sha}
    not_discriminating = {**with_control_audit(lira_record(), **NEAR_CHANCE), **sha}
    claim = Claim(name="t", promise="p", path="test", checks=(MembershipAUC(max=0.55),))
    assert check_claim(claim, [not_discriminating, discriminating]).verdict == PASS  # the strongest evidence
    assert check_claim(claim, [not_discriminating, not_discriminating]).verdict == INCONCLUSIVE


def test_claim_json_and_table_carry_control_and_discriminates(tmp_path):
    record = with_control_audit(lira_record(), **NEAR_CHANCE)
    record["audit"]["control"]["audit"]["tpr_at_1pct_fpr_ci"] = [0.03, 0.07]  # the TPR row discriminates
    record["audit"]["control"]["audit"]["tpr_at_1pct_fpr"] = 0.05
    run = run_dir_with(tmp_path, record)
    claim = tmp_path / "claim.yaml"
    claim.write_text(
        "name: t\npromise: p\nchecks:\n  - {type: membership_tpr, max: 0.02}\n"
        "  - {type: membership_auc, max: 0.55}\n  - {type: epsilon, max: 1, delta: 1.0e-5}\n"
    )
    proc = claim_cli(claim, run)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "TPR 0.050 [0.030, 0.070]: FAIL" in proc.stdout and "AUC 0.520 [0.500, 0.540]: PASS" in proc.stdout
    rows = json.loads((run / "claim_t.json").read_text())["evidence"]
    assert [(r["verdict"], r["control"], r["discriminates"]) for r in rows] == [
        (PASS, "TPR 0.050 [0.030, 0.070]: FAIL", True),
        (INCONCLUSIVE, "AUC 0.520 [0.500, 0.540]: PASS", False),
        (PASS, "—", None),
    ]


def test_the_epsilon_row_has_no_control():
    row, _ = judge(Epsilon(max=1, delta=1e-5), lira_record())
    assert (row.verdict, row.control, row.discriminates) == (PASS, "—", None)


def test_attribute_rows_read_the_controls_attribute_section():
    record = suggestions_record()
    record["audit"]["control"]["audit"]["attribute"] = {
        "name": "seeking",
        "result": "too_few",
        "reason": "fewer than 5 reference users",
    }
    row, _ = judge(AttributeAdvantage(max=0.05), record)
    assert (row.verdict, row.discriminates) == (INCONCLUSIVE, None) and "too_few" in row.reason
    assert judge(AttributeAdvantage(max=0.05), suggestions_record())[0].discriminates is True


def test_the_control_view_is_judged_without_the_audit_gate():
    # the main audit failed the harness's control floor (inconclusive); the control's own audit
    # section is judged on the statistic, not on the main audit's result
    record = lira_record(result="inconclusive", reason="positive control failed: …")
    record["audit"]["control"]["audit"]["result"] = "inconclusive"
    row, _ = judge(MembershipAUC(max=0.55), record)
    assert row.verdict == INCONCLUSIVE and row.reason.startswith("audit inconclusive")  # the main audit's gate
    assert (row.control, row.discriminates) == ("AUC 0.871 [0.859, 0.882]: FAIL", True)  # the control's statistic
    assert LIRA_CONTROL_AUDIT["result"] == "measured"  # the fixtures were not mutated


def test_a_malformed_control_audit_is_bad_input_naming_it():
    record = lira_record()
    del record["audit"]["control"]["audit"]["auc_ci"]
    with pytest.raises(ClaimError, match=r"control view: audit = audit\.control\.audit\): audit\.auc_ci: missing"):
        check_claim(Claim(name="t", promise="p", path="test", checks=(MembershipAUC(max=0.55),)), record)
    record["audit"]["control"]["audit"] = "lira"
    with pytest.raises(ClaimError, match=r"audit\.control\.audit: expected a mapping"):
        check_claim(Claim(name="t", promise="p", path="test", checks=(MembershipAUC(max=0.55),)), record)
