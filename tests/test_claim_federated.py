"""Claims on federated pipelines: the canary-client ε row (``canary_client_epsilon``) and N/A rows.

Records are hand-written like those of tests/test_claim.py (an ε that recomputes from its events, a
control whose own audit leaks), with an ``audit=canary_clients`` section shaped as
``sandbox.audit.canary_clients`` writes it.
"""

from __future__ import annotations

import copy

import pytest

from sandbox.claim import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, Claim, check_claim, load_claim
from sandbox.claim.checks import CanaryClientEpsilon, Epsilon, MembershipTPR
from tests.test_claim import base_record, control, lira_record, privacy

# The same federated pipeline without DP, with its canary clients: the estimate is huge.
CANARY_CLIENT_CONTROL_AUDIT = {
    "attack": "canary_clients",
    "level": "user",
    "epsilon_estimate": 41.2,
    "epsilon_estimate_ci": [35.0, 48.9],
    "n_canaries": 100,
    "result": "measured",
}


def canary_client_record(estimate=0.12, ci=(0.0, 0.41), *, private=True, **audit) -> dict:
    """A federated DP-FedAvg run (ε just under 0.95) audited by canary clients; its control passed."""
    section = {
        "attack": "canary_clients",
        "level": "user",
        "threat": "final model",
        "epsilon_estimate": estimate,
        "epsilon_estimate_ci": list(ci),
        "n_canaries": 100,
        "control": control(copy.deepcopy(CANARY_CLIENT_CONTROL_AUDIT), pipeline="federated, no DP"),
        "result": "measured",
        "reason": "control's estimate is large",
        **audit,
    }
    if not private:
        section["control"] = {
            "ran_on": "this run (not private)",
            "pipeline": "federated, no DP",
            "passed": True,
            "reason": "the run itself",
        }
    return {**base_record(), "privacy": privacy(0.95) if private else privacy(None), "audit": section}


ROW = CanaryClientEpsilon(max=1.0)


def _row(record, check=ROW):
    claim = Claim(name="t", promise="p", path="test", checks=(check,))
    return check_claim(claim, record).evidence[0]


def test_the_shipped_cannot_memorize_has_the_federated_row():
    assert CanaryClientEpsilon(max=1.0) in load_claim("cannot-memorize").checks


def test_estimate_ci_below_the_bound_passes_and_discriminates_on_the_federated_control():
    row = _row(canary_client_record())
    assert row.verdict == PASS, row.reason
    assert row.discriminates is True and "41.2" in row.control
    assert row.ci == (0.0, 0.41)


@pytest.mark.parametrize(
    "estimate, ci, verdict",
    [(2.5, (1.6, 3.9), FAIL), (0.8, (0.3, 1.7), INCONCLUSIVE), (0.5, (0.2, 0.99), PASS)],
)
def test_estimate_is_judged_on_its_ci(estimate, ci, verdict):
    assert _row(canary_client_record(estimate, ci)).verdict == verdict


def test_a_control_that_also_passes_does_not_discriminate():
    record = canary_client_record()
    record["audit"]["control"]["audit"].update(epsilon_estimate=0.3, epsilon_estimate_ci=[0.1, 0.6])
    row = _row(record)
    assert row.verdict == INCONCLUSIVE and "does not discriminate" in row.reason


def test_the_non_private_pipeline_fails_its_own_row():
    row = _row(canary_client_record(41.2, (35.0, 48.9), private=False))
    assert row.verdict == FAIL and row.discriminates is True  # its control is the run itself


def test_a_dp_bug_in_the_canary_client_audit_fails_the_row_and_epsilon():
    record = canary_client_record(6.0, (4.1, 8.0), result="dp_bug", reason="estimate CI low 4.1 > ε 0.95")
    record["status"] = "failed"
    claim = Claim(name="t", promise="p", path="test", checks=(ROW, Epsilon(max=1.0, delta=1e-5)))
    result = check_claim(claim, record)
    assert [e.verdict for e in result.evidence] == [FAIL, FAIL] and result.exit_code == 4


def test_not_measured_on_a_federated_run_without_canary_clients():
    row = _row(lira_record())
    assert row.verdict == INCONCLUSIVE and "no audit=canary_clients" in row.reason


def test_the_federated_row_is_na_on_a_central_run_and_counts_in_no_verdict():
    central = lira_record()
    central["mode"] = "central"
    central["engine"] = "central"
    claim = Claim(name="t", promise="p", path="test", checks=(MembershipTPR(max=0.02), ROW))
    result = check_claim(claim, central)
    assert [e.verdict for e in result.evidence] == [PASS, NOT_APPLICABLE]
    assert result.verdict == PASS and "federated pipelines only" in result.evidence[1].reason
    only_na = check_claim(Claim(name="t", promise="p", path="test", checks=(ROW,)), central)
    assert only_na.verdict == INCONCLUSIVE  # nothing was judged


def test_central_and_federated_audits_of_one_model_are_not_mixed_up():
    # the federated row takes the canary-client record's evidence, the membership row the LiRA one
    lira, clients = lira_record(), canary_client_record()
    claim = Claim(name="t", promise="p", path="test", checks=(MembershipTPR(max=0.02), ROW))
    both = check_claim(claim, [lira, clients])
    assert [e.verdict for e in both.evidence] == [PASS, PASS]


# --- the server view ----------------------------------------------------------------------------


def _recovery(mean, ci):
    return {"result": "measured", "n_clients": 200, "recall": {"mean": mean, "ci": list(ci)}}


def server_view_record(*, secagg: bool, control_audit: dict | None = None) -> dict:
    """audit=server_view as sandbox.audit.server_view writes it: without secure aggregation every
    client's update is seen and read; with it only aggregates (control: the same config without)."""
    seen = 0 if secagg else 200
    section = {
        "attack": "server_view",
        "level": "user",
        "threat": "curious server",
        "result": "measured",
        "reason": "measured",
        "secure_aggregation": secagg,
        "clients_took_part": 200,
        "clients_seen_individually": {"count": seen, "share": seen / 200},
        "individual": {"result": "not_applicable", "reason": "the server saw no individual update"}
        if secagg
        else _recovery(0.97, (0.96, 0.98)),
        "aggregate_intersection": _recovery(0.31, (0.28, 0.34))
        if secagg
        else {"result": "not_applicable", "reason": "no secure aggregation"},
    }
    if secagg:
        section["control"] = (
            {"ran_on": "none", "passed": False, "reason": "not run"}
            if control_audit is None
            else {"ran_on": "control run (no secure aggregation)", "passed": True, "audit": control_audit}
        )
    else:
        section["control"] = {"ran_on": "this run (individual updates seen)", "passed": True}
    return {**base_record(), "privacy": privacy(0.95), "audit": section}


def test_server_view_claim_fails_without_secure_aggregation():
    result = check_claim("server-sees-only-aggregates", server_view_record(secagg=False))
    assert [e.verdict for e in result.evidence] == [FAIL, FAIL] and result.verdict == FAIL
    assert result.evidence[0].measured == 1.0


def test_server_view_claim_passes_under_secure_aggregation_with_its_control():
    control_audit = server_view_record(secagg=False)["audit"]
    result = check_claim("server-sees-only-aggregates", server_view_record(secagg=True, control_audit=control_audit))
    assert result.verdict == PASS, result.table()
    assert all(e.discriminates is True for e in result.evidence)
    assert result.evidence[1].measured == 0.0  # nothing received one by one: nothing read off


def test_server_view_claim_under_secure_aggregation_without_a_control_is_inconclusive():
    result = check_claim("server-sees-only-aggregates", server_view_record(secagg=True))
    assert result.verdict == INCONCLUSIVE and "no control" in result.evidence[0].reason


def test_the_intersection_view_is_judged_on_its_ci():
    from sandbox.claim.checks import ServerRecovery

    record = server_view_record(secagg=True, control_audit=server_view_record(secagg=False)["audit"])
    assert _row(record, ServerRecovery(max=0.2, view="aggregate_intersection")).verdict == FAIL
    assert _row(record, ServerRecovery(max=0.5, view="aggregate_intersection")).verdict == INCONCLUSIVE  # control


def test_an_unbounded_estimate_fails_the_row():
    assert _row(canary_client_record(None, (12.0, None), private=False)).verdict == FAIL
