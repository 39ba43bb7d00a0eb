"""Claims check the record before they trust it (issue 13, item 6; `sandbox.claim.record_checks`).

Each test takes a realistic record (tests/test_claim.py's builders: an ε that recomputes from its
events, secure noise, a leaking control) and corrupts one field. Refused records exit 3 with a
message naming the file and the key, and nothing is written; possible records that give no
guarantee (seeded noise, ε = inf, a failed run) are judged and FAIL.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from sandbox.claim import FAIL, PASS, Claim, ClaimError, check_claim
from sandbox.claim.checks import (
    NO_NOISE_SOURCE,
    SEEDED_NOISE,
    AttributeAdvantage,
    CanaryExposure,
    Epsilon,
    Extraction,
    MembershipAUC,
    MembershipTPR,
)
from sandbox.privacy import SubsampledGaussianEvent, epsilon_for
from sandbox.record import model_fingerprint
from tests.test_claim import claim_cli, lira_record, model_state, privacy, run_dir_with

EPSILON_CLAIM = Claim(name="t", promise="p", path="test", checks=(MembershipAUC(max=0.55), Epsilon(max=1, delta=1e-5)))


def refused(record, *, key: str, claim: Claim = EPSILON_CLAIM) -> str:
    """check_claim raises ClaimError naming ``key``; returns the message."""
    with pytest.raises(ClaimError) as err:
        check_claim(claim, record)
    assert key in str(err.value), str(err.value)
    return str(err.value)


def assert_cli_refuses(tmp_path: Path, record: dict, *expected: str) -> None:
    """The CLI exits 3 naming the record file and ``expected``, without a traceback, writing nothing."""
    run = run_dir_with(tmp_path, record)
    proc = claim_cli("cannot-memorize", run)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr and proc.stdout == ""
    assert all(text in proc.stderr for text in expected), proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["model.pt", "record.json"]


# --- ε ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [math.nan, -5.0])
def test_nan_or_negative_epsilon_is_refused(tmp_path, epsilon):
    record = lira_record()
    record["privacy"]["epsilon"] = epsilon
    assert "not a possible ε" in refused(record, key="privacy.epsilon")
    assert_cli_refuses(tmp_path, record, "record.json", "privacy.epsilon", "not a possible ε")


def test_infinite_epsilon_is_judged_and_the_epsilon_row_fails(tmp_path):
    # gdp at σ = 0.2, every unit in all 10 steps: no finite guarantee, and the events say so
    events = [SubsampledGaussianEvent(noise_multiplier=0.2, sample_rate=1.0, steps=10)]
    assert epsilon_for(events=events, delta=1e-6, accountant="gdp") == math.inf
    record = lira_record()
    record["privacy"].update(epsilon=math.inf, accountant="gdp", events=[dataclasses.asdict(e) for e in events])
    result = check_claim(EPSILON_CLAIM, record)
    eps = result.evidence[1]
    assert (eps.verdict, result.verdict) == (FAIL, FAIL) and "no finite guarantee" in eps.reason
    run = run_dir_with(tmp_path, record)
    proc = claim_cli("cannot-memorize", run)  # not bad input: a verdict, written
    assert proc.returncode == 1, proc.stderr
    rows = json.loads((run / "claim_cannot-memorize.json").read_text())["evidence"]
    assert rows[-1]["verdict"] == FAIL and "no finite guarantee" in rows[-1]["reason"]


def test_epsilon_off_by_one_percent_from_its_events_is_refused(tmp_path):
    record = lira_record()
    recorded = record["privacy"]["epsilon"]
    record["privacy"]["epsilon"] = recorded * 1.01
    message = refused(record, key="privacy.epsilon")
    assert "does not recompute from privacy.events" in message and f"{recorded!r}" in message  # what they give
    assert_cli_refuses(tmp_path, record, "record.json", "privacy.epsilon", "does not recompute")
    within = lira_record()  # the tolerance is relative 1e-6: a last-digit difference is the same ε
    within["privacy"]["epsilon"] = recorded * (1 + 1e-8)
    assert check_claim(EPSILON_CLAIM, within).verdict == PASS


def test_epsilon_is_recomputed_with_the_recorded_accountant_and_delta():
    record = lira_record()
    record["privacy"]["delta"] = 1e-7  # same events, another δ: another ε
    assert "does not recompute" in refused(record, key="privacy.epsilon")
    record = lira_record()
    record["privacy"]["accountant"] = "prv"
    assert "does not recompute" in refused(record, key="privacy.epsilon")
    record["privacy"]["accountant"] = "moments"
    refused(record, key="privacy.accountant")
    record = lira_record()
    record["privacy"]["delta"] = 1.5
    refused(record, key="privacy.delta")


def test_event_with_an_unknown_key_or_impossible_value_is_refused():
    record = lira_record()
    record["privacy"]["events"][0]["sigma"] = 1.0
    assert "privacy.events[0].sigma: unknown event key" in refused(record, key="privacy.events[0].sigma")
    record = lira_record()
    record["privacy"]["events"][0]["noise_multiplier"] = -1.0
    assert "impossible event" in refused(record, key="privacy.events[0]")
    record = lira_record()
    del record["privacy"]["events"][0]["steps"]
    refused(record, key="privacy.events[0]")
    record = lira_record()
    del record["privacy"]["events"]
    refused(record, key="privacy.events: missing")


@pytest.mark.skipif(
    "components" not in {f.name for f in dataclasses.fields(SubsampledGaussianEvent)},
    reason="events have no components field in this tree",
)
def test_event_components_from_json_lists_recompute():
    """Adaptive clipping records its two Gaussian queries as components, [[name, σ], ...] in JSON."""
    from sandbox.privacy import joint_noise_multiplier

    components = [["update", 1.2], ["count", 4.0]]
    event = {
        "noise_multiplier": joint_noise_multiplier([1.2, 4.0]),
        "sample_rate": 0.05,
        "steps": 100,
        "sampling": "poisson",
        "components": components,
    }
    eps = epsilon_for(
        events=[SubsampledGaussianEvent(**{**event, "components": tuple(map(tuple, components))})],
        delta=1e-6,
        accountant="rdp",
    )
    record = lira_record()
    record["privacy"].update(epsilon=eps, events=[event])
    loose = Claim(name="t", promise="p", path="test", checks=(Epsilon(max=10, delta=1e-5),))
    result = check_claim(loose, record)
    assert result.verdict == PASS and 1 < eps < 10, (eps, result.table())
    record["privacy"]["events"][0]["noise_multiplier"] = 1.2  # not the joint multiplier of its components
    refused(record, key="privacy.events[0]")


# --- status, mechanism and unit -----------------------------------------------------------------


@pytest.mark.parametrize(
    "status, why",
    [
        ("running", "is not the status of a finished run"),
        ("aborted", "is not the status of a finished run"),
        (None, "expected text, got None"),
    ],
)  # the typed record refuses null
def test_status_that_is_not_a_finished_run_is_refused(tmp_path, status, why):
    record = lira_record()
    record["status"] = status
    assert why in refused(record, key="status")
    assert_cli_refuses(tmp_path, record, "record.json", "status")
    del record["status"]
    refused(record, key="status: missing")


def test_stopped_budget_is_a_finished_run():
    record = lira_record()
    record["status"] = "stopped_budget"
    assert check_claim(EPSILON_CLAIM, record).verdict == PASS


def test_failed_record_is_judged_and_every_row_fails():
    """status failed = the audit found a probable DP bug: every row FAILs, the unmeasured ones too."""
    record = lira_record(result="dp_bug", reason="empirical ε lower bound exceeds the accountant's ε")
    record["status"] = "failed"
    claim = Claim(
        name="t",
        promise="p",
        path="test",
        checks=(
            MembershipTPR(max=0.02),
            MembershipAUC(max=0.55),
            CanaryExposure(max=2.5),
            Extraction(),
            AttributeAdvantage(max=0.05),
            Epsilon(max=1, delta=1e-5),
        ),
    )
    result = check_claim(claim, record)
    assert result.verdict == FAIL and [e.verdict for e in result.evidence] == [FAIL] * 6
    assert all("dp_bug" in e.reason or "probable DP bug" in e.reason for e in result.evidence)
    assert result.evidence[2].reason.startswith("run status failed: the audit found a probable DP bug")


@pytest.mark.parametrize(
    "mechanism, unit",
    [
        ("dpsgd", "user"),
        ("client_dpsgd", "user"),
        ("client_dpsgd", "workspace"),
        ("dpfedavg", "example"),
        ("dpsgd", "workspace"),
    ],
)
def test_unit_that_does_not_fit_the_mechanism_is_refused(tmp_path, mechanism, unit):
    record = lira_record()
    record["privacy"].update(mechanism=mechanism, unit=unit)
    assert "does not fit privacy.mechanism" in refused(record, key="privacy.unit")
    assert_cli_refuses(tmp_path, record, "record.json", "privacy.unit", mechanism)


@pytest.mark.parametrize(
    "mechanism, unit",
    [("dpsgd", "example"), ("client_dpsgd", "example"), ("dpfedavg", "user"), ("dpfedavg", "workspace")],
)
def test_unit_that_fits_the_mechanism_is_judged(mechanism, unit):
    record = lira_record()
    record["privacy"].update(mechanism=mechanism, unit=unit)
    check_claim(EPSILON_CLAIM, record)  # no refusal (the ε row judges the unit against the claim's)


def test_mechanism_none_must_have_no_epsilon_and_a_private_one_must_have_one():
    record = lira_record()
    record["privacy"] = privacy(None)
    assert check_claim(EPSILON_CLAIM, record).evidence[1].reason == "not private: the run has no ε"
    record["privacy"]["epsilon"] = 1.0
    assert "a run without DP has no ε" in refused(record, key="privacy.epsilon")
    record = lira_record()
    record["privacy"]["epsilon"] = None
    assert "must state the ε it spent" in refused(record, key="privacy.epsilon")
    record["privacy"]["mechanism"] = "laplace"
    refused(record, key="privacy.mechanism")


# --- noise source -------------------------------------------------------------------------------


def test_seeded_noise_fails_every_epsilon_row():
    record = lira_record()
    record["privacy"]["noise_source"] = "seeded"
    claim = Claim(
        name="t",
        promise="p",
        path="test",
        checks=(Epsilon(max=1, delta=1e-5), Epsilon(max=100, delta=1e-3), MembershipAUC(max=0.55)),
    )
    rows = check_claim(claim, record).evidence
    assert [r.verdict for r in rows] == [FAIL, FAIL, PASS]  # the audit rows judge the model, not its noise
    assert rows[0].reason == rows[1].reason == SEEDED_NOISE
    assert SEEDED_NOISE == (
        "seeded noise (research mode): anyone holding the record can regenerate and subtract the noise; no DP guarantee"
    )
    shipped = check_claim("cannot-memorize", record)
    assert shipped.verdict == FAIL and shipped.evidence[-1].reason == SEEDED_NOISE


def test_record_without_a_noise_source_fails_the_epsilon_row():
    record = lira_record()
    del record["privacy"]["noise_source"]
    row = check_claim(EPSILON_CLAIM, record).evidence[1]
    assert (row.verdict, row.reason) == (FAIL, NO_NOISE_SOURCE)
    assert NO_NOISE_SOURCE == (
        "record does not state its noise source (written before secure noise): its noise "
        "was seeded from the recorded seed"
    )


def test_secure_noise_passes_the_gate_and_an_unknown_source_is_refused():
    assert check_claim(EPSILON_CLAIM, lira_record()).evidence[1].verdict == PASS
    record = lira_record()
    record["privacy"]["noise_source"] = "urandom"
    refused(record, key="privacy.noise_source")


# --- the model beside the record ----------------------------------------------------------------


def test_model_sha256_that_does_not_match_model_pt_is_refused(tmp_path):
    """A failed re-run overwrote model.pt and left the earlier record: its fingerprint no longer matches."""
    run = run_dir_with(tmp_path, lira_record())  # record.json + model.pt of model_state(0)
    record = json.loads((run / "record.json").read_text())
    assert record["model"]["sha256"] == model_fingerprint(model_state(0))
    torch.save(model_state(1), run / "model.pt")  # the new model, the old record
    for target in (run, run / "record.json"):
        message = refused(target, key="model.sha256")
        assert str(run / "record.json") in message and "does not match" in message
    proc = claim_cli("cannot-memorize", run)
    assert proc.returncode == 3 and "model.sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["model.pt", "record.json"]


def test_model_check_needs_the_model_and_its_fingerprint(tmp_path):
    run = run_dir_with(tmp_path, lira_record(), "no-model")
    (run / "model.pt").unlink()
    assert "missing beside" in refused(run, key="model.pt")
    run = run_dir_with(tmp_path, lira_record(), "no-sha")
    record = json.loads((run / "record.json").read_text())
    del record["model"]
    (run / "record.json").write_text(json.dumps(record))
    refused(run, key="model: missing")
    run = run_dir_with(tmp_path, lira_record(), "garbage")
    (run / "model.pt").write_bytes(b"not a model")
    assert "not a readable model state_dict" in refused(run, key="model.pt")


def test_matching_model_passes_and_a_dict_says_it_was_not_verified(tmp_path):
    run = run_dir_with(tmp_path, lira_record())
    from_dir = check_claim(EPSILON_CLAIM, run)
    assert from_dir.verdict == PASS
    assert any(line.endswith("model.sha256 matches model.pt") for line in from_dir.record_checks)
    assert any("ε recomputed from 1 recorded event(s)" in line for line in from_dir.record_checks)
    from_dict = check_claim(EPSILON_CLAIM, json.loads((run / "record.json").read_text()))
    assert from_dict.evidence == from_dir.evidence
    assert any(
        "model.sha256 not verified: a record given as a dict has no model.pt" in line
        for line in from_dict.record_checks
    )
    assert "record check: record: model.sha256 not verified" in from_dict.table()
    assert from_dict.to_dict()["record_checks"] == list(from_dict.record_checks)


def test_every_record_of_a_model_is_checked(tmp_path):
    good = run_dir_with(tmp_path, copy.deepcopy(lira_record()), "good")
    stale = run_dir_with(tmp_path, copy.deepcopy(lira_record()), "stale")
    torch.save(model_state(1), stale / "model.pt")
    message = refused([good, stale], key="model.sha256")
    assert str(stale / "record.json") in message
