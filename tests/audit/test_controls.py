"""Positive controls judged on what they measure, the one-run bound's choice of guesses, the DP-bug
message, the models an audit trains (for the ledger), and the suggestions audit's control and alarm."""

from __future__ import annotations

import types

import pytest

from sandbox.audit import recsys
from sandbox.audit.bounds import one_run_eps_lower_bound
from sandbox.audit.harness import ProbableDPBug, control_statistics, control_verdict, one_run_bound
from sandbox.config import resolve
from sandbox.privacy.relations import max_auc
from tests.conftest import TINY, compose_config, run_in


def _run(tmp_path, overrides):
    return run_in(tmp_path, overrides)


def _section(auc_ci, tpr1_ci=(0.0, 0.0), tpr01_ci=(0.0, 0.0), n_nonmembers=60, **extra):
    return {
        "auc": sum(auc_ci) / 2,
        "auc_ci": list(auc_ci),
        "tpr_at_1pct_fpr": sum(tpr1_ci) / 2,
        "tpr_at_1pct_fpr_ci": list(tpr1_ci),
        "tpr_at_0.1pct_fpr": sum(tpr01_ci) / 2,
        "tpr_at_0.1pct_fpr_ci": list(tpr01_ci),
        "n_members": 200,
        "n_nonmembers": n_nonmembers,
        **extra,
    }


# -- controls -----------------------------------------------------------------------------------------
def test_a_leaky_control_with_few_non_members_passes_on_auc():
    """The issue's case: LiRA AUC 0.712 [0.636, 0.783] with 60 non-members used to be INCONCLUSIVE
    (TPR at 1% FPR was read at FPR 0); the AUC catches members, and the TPRs say they cannot be measured."""
    stats = control_statistics(_section((0.636, 0.783)), floor=0.02)
    assert stats["auc"] == {
        "measurable": True,
        "value": pytest.approx(0.7095),
        "ci": [0.636, 0.783],
        "caught": True,
        "rule": "AUC CI lower end > 0.5",
    }
    for key, need in (("tpr_at_1pct_fpr", 100), ("tpr_at_0.1pct_fpr", 1000)):
        assert stats[key]["measurable"] is False and stats[key]["caught"] is None
        assert stats[key]["note"].startswith(f"not measurable: needs ≥ {need} non-members, has 60")
    passed, reason = control_verdict(stats)
    assert passed and reason.startswith("control caught members on: AUC 0.710 (CI from 0.636")


def test_a_control_catching_nothing_fails_and_says_why_per_statistic():
    stats = control_statistics(_section((0.45, 0.60), tpr1_ci=(0.0, 0.03), n_nonmembers=500), floor=0.02)
    assert stats["auc"]["caught"] is False and stats["tpr_at_1pct_fpr"]["measurable"]
    assert stats["tpr_at_1pct_fpr"]["caught"] is False and stats["tpr_at_0.1pct_fpr"]["caught"] is None
    passed, reason = control_verdict(stats)
    assert not passed and reason.startswith("positive control failed")
    assert "AUC 0.525 (CI from 0.450" in reason and "TPR at 1% FPR 0.015 (CI from 0.000" in reason
    assert "TPR at 0.1% FPR: not measurable: needs ≥ 1000 non-members, has 500" in reason


def test_any_measurable_statistic_that_catches_members_passes_the_control():
    # TPR at 1% FPR alone (AUC straddles 0.5): enough non-members to measure it
    stats = control_statistics(_section((0.49, 0.58), tpr1_ci=(0.05, 0.12), n_nonmembers=400), floor=0.02)
    assert control_verdict(stats)[0] and [k for k, s in stats.items() if s["caught"]] == ["tpr_at_1pct_fpr"]
    # ...but the same TPR with 60 non-members is not measurable and catches nothing
    stats = control_statistics(_section((0.49, 0.58), tpr1_ci=(0.05, 0.12), n_nonmembers=60), floor=0.02)
    assert not control_verdict(stats)[0]
    # extraction alone: a secret ranked first of its 10^6
    canaries = {"exposure_by_rank": {"trained_hosts": {"n": 40, "mean": 3.1, "max": 6.6}}}
    stats = control_statistics(
        _section((0.45, 0.58), extraction={"n_canaries": 40, "n_extracted": 2}, canaries=canaries), floor=0.02
    )
    assert stats["extraction"] == {
        "measurable": True,
        "value": 2,
        "of": 40,
        "caught": True,
        "rule": "at least one canary's secret ranks first of its whole space",
    }
    assert stats["exposure_by_rank"]["caught"] is None and stats["exposure_by_rank"]["value"] == 3.1
    passed, reason = control_verdict(stats)
    assert passed and "extraction 2 of 40" in reason
    none_tried = control_statistics(_section((0.45, 0.58), extraction={"n_canaries": 0, "n_extracted": 0}), floor=0.02)
    assert none_tried["extraction"]["measurable"] is False and not control_verdict(none_tried)[0]


# -- the one-run bound ------------------------------------------------------------------------------
def test_one_run_bound_is_the_best_guess_count_at_a_bonferroni_corrected_level():
    tried = [
        {"fractions": [0.05], "guess_in": 5, "guess_out": 5, "guesses": 10, "correct": 10},
        {"fractions": [0.2], "guess_in": 20, "guess_out": 20, "guesses": 40, "correct": 38},
        {"fractions": [1.0], "guess_in": 100, "guess_out": 100, "guesses": 200, "correct": 130},
    ]
    details = {"canaries": {"one_run": {"m": 200, "tried": tried, "alpha": 0.05}}}
    got = one_run_bound(details, delta=1e-5, alpha=0.05)
    expected = [one_run_eps_lower_bound(200, t["guesses"], t["correct"], delta=1e-5, alpha=0.05 / 3) for t in tried]
    assert [t["eps_lower_bound"] for t in tried] == expected
    assert got == max(expected) == expected[1] == details["canaries"]["one_run_eps_lower_bound"]
    one = details["canaries"]["one_run"]
    assert (one["guess_in"], one["guesses"], one["correct"], one["chosen_fractions"]) == (20, 40, 38, [0.2])
    assert one["alpha_each"] == pytest.approx(0.05 / 3) and one["delta"] == 1e-5
    # the correction costs something: each is below the uncorrected bound for the same guesses
    assert got < one_run_eps_lower_bound(200, 40, 38, delta=1e-5, alpha=0.05)
    assert one_run_bound({"canaries": {"one_run_note": "not computed"}}, delta=0.0, alpha=0.05) is None


# -- the alarm's message ------------------------------------------------------------------------------
def test_probable_dp_bug_says_which_rule_fired_against_the_converted_epsilon():
    audit = {
        "attack": "canary",
        "relation": "add/remove one example inside one user present in both worlds",
        "accountant_epsilon": 0.995,
        "reason": "…",
        "accountant_comparison": {
            "relation": "…",
            "epsilon": 0.995,
            "delta": 1e-5,
            "conversion": "…: the accountant's relation itself",
        },
        "verdict_inputs": {
            "auc_alarm": True,
            "auc_ci_low": 0.84,
            "max_auc_permitted": 0.730,
            "one_run_alarm": True,
            "one_run_eps_lower_bound": 1.94,
            "alpha": 0.05,
            "unit": "example",
        },
    }
    message = str(ProbableDPBug(audit))
    assert message.startswith("PROBABLE DP BUG: the canary audit (add/remove one example inside one user")
    assert "the AUC's CI lower end 0.840 exceeds 0.730, the largest AUC an (ε' = 0.995, δ' = 1e-05)-DP" in message
    assert "one-run bound (Steinke et al., 95% confidence) ε ≥ 1.940 exceeds ε' = 0.995" in message
    assert "accountant's ε = 0.995 (example-level)" in message and "the accountant's relation itself" in message
    audit["verdict_inputs"]["auc_alarm"] = False
    only_one_run = str(ProbableDPBug(audit))
    assert "CI lower end" not in only_one_run and "one-run bound" in only_one_run


# -- what an audit trains, for the ledger ---------------------------------------------------------------
@pytest.mark.e2e  # shadow models
def test_models_trained_lists_every_shadow_and_control_with_its_own_events(tmp_path):
    record = _run(
        tmp_path,
        [
            *TINY,
            "privacy=dpsgd",
            "privacy.target_epsilon=4",
            "audit=lira",
            "audit.shadows=2",
            "audit.workers=1",
            "audit.resamples=100",
        ],
    )
    p, models = record["privacy"], record["audit"]["models_trained"]
    assert [m["what"] for m in models] == [
        "shadow 0",
        "shadow 1",
        "positive control",
        "positive control shadow 0",
        "positive control shadow 1",
    ]
    for shadow in models[:2]:  # DP shadows: their own σ and δ, from their own (half) population
        assert shadow["private"] and shadow["unit"] == "example" and shadow["events"]
        assert shadow["delta"] >= p["delta"]  # fewer examples: δ ≤ 1/(10 N) can only be larger or equal
        assert shadow["events"] != p["events"]  # q = batch / (their N) and σ calibrated for it
        assert {"noise_multiplier", "sample_rate", "steps"} <= set(shadow["events"][0])
    for control in models[2:]:
        assert control == {"what": control["what"], "private": False, "unit": "example", "delta": None, "events": []}


# -- the suggestions audit ------------------------------------------------------------------------------
SMALL_JOBS = [
    "task=jobs",
    "task.jobs.n_members=400",
    "task.jobs.n_postings=60",
    "task.jobs.seeking_rate=0.3",
    "task.n_buckets=1024",
    "task.embedding_dim=16",
    "task.hidden_dim=16",
    "audit=suggestions",
    "audit.resamples=100",
    "progress=false",
]


def test_a_non_private_suggestions_run_is_its_own_control(tmp_path):
    a = _run(tmp_path, [*SMALL_JOBS, "privacy=none"])["audit"]
    c = a["control"]
    assert c["ran_on"] == "this run (not private)" and c["pipeline"] == "central, no DP" and a["models_trained"] == []
    assert c["audit"]["attack"] == "suggestions" and c["audit"]["result"] == "measured"
    assert c["audit"]["membership"]["auc"] == a["membership"]["auc"] and c["audit"]["attribute"] == a["attribute"]
    assert set(c["statistics"]) == {"auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "attribute_gap"}
    assert c["passed"] == any(s["caught"] for s in c["statistics"].values())
    assert a["relation"] == "add/remove one user" and a["accountant_comparison"]["comparable"] is False
    assert a["result"] == "measured" and a["max_auc_permitted"] is None


def test_a_private_suggestions_run_trains_a_non_private_control_of_the_same_pipeline(tmp_path):
    record = _run(
        tmp_path, [*SMALL_JOBS, "mode=federated", "federation.rounds=3", "privacy=dpfedavg", "privacy.target_epsilon=8"]
    )
    a, p = record["audit"], record["privacy"]
    assert a["control"]["ran_on"] == "control run" and a["control"]["pipeline"] == "federated, no DP"
    assert a["models_trained"] == [
        {"what": "positive control", "private": False, "unit": "user", "delta": None, "events": []}
    ]
    assert a["control"]["audit"]["membership"]["auc"] != a["membership"]["auc"]  # another model
    cmp = a["accountant_comparison"]  # user membership vs user-level ε: the accountant's relation itself
    assert cmp["epsilon"] == p["epsilon"] and cmp["delta"] == p["delta"] and a["comparable"]
    assert a["max_auc_permitted"] == pytest.approx(max_auc(p["epsilon"], p["delta"]))
    assert record["status"] == "completed" and a["result"] == "measured"


def test_the_suggestions_alarm_fires_on_an_auc_the_accountant_forbids(monkeypatch):
    cfg = resolve(
        compose_config(
            [*SMALL_JOBS, "mode=federated", "privacy=dpfedavg", "privacy.target_epsilon=1", "audit.control=false"]
        )
    )
    leaky = {
        "attack": "suggestions",
        "level": "user",
        "threat": "top-10 list shown to the user",
        "result": "measured",
        "attribute": {"result": "not_applicable", "reason": "—"},
        "membership": {
            "auc": 0.9,
            "auc_ci": [0.85, 0.95],
            "tpr_at_fpr": {"0.001": 0.1, "0.01": 0.3},
            "tpr_at_fpr_ci": {"0.001": [0.0, 0.2], "0.01": [0.2, 0.4]},
            "n_members": 300,
            "n_nonmembers": 200,
        },
    }
    monkeypatch.setattr(recsys, "suggestions_audit", lambda *args, **kwargs: leaky)
    a = recsys.run_suggestions_audit(
        cfg,
        types.SimpleNamespace(extra=None),
        types.SimpleNamespace(model=None),
        privacy={"epsilon": 1.0, "delta": 1e-5, "unit": "user"},
    )
    assert a["result"] == "dp_bug" and a["verdict_inputs"]["auc_alarm"]
    assert a["max_auc_permitted"] == pytest.approx(0.731, abs=1e-3) and "0.850 > 0.731" in a["reason"]
    assert a["control"]["ran_on"] == "none" and not a["control"]["passed"]
    assert "PROBABLE DP BUG: the suggestions audit (add/remove one user)" in str(ProbableDPBug(a))
    # the same AUC under a user-level ε of 4 is permitted (max AUC 0.982)
    a = recsys.run_suggestions_audit(
        cfg,
        types.SimpleNamespace(extra=None),
        types.SimpleNamespace(model=None),
        privacy={"epsilon": 4.0, "delta": 1e-5, "unit": "user"},
    )
    assert a["result"] == "measured" and not a["verdict_inputs"]["auc_alarm"]
