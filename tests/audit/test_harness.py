"""Tiny end-to-end audits: the record's audit section, the positive control, the DP-bug alarm, shadows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sandbox.audit.harness import ProbableDPBug, accountant_comparison, audit_relation
from sandbox.audit.shadows import keep_mask, train_shadows
from sandbox.audit.targets import build_population
from sandbox.config import ConfigError, resolve
from sandbox.prepare import Seeds, prepare
from sandbox.privacy.relations import group_privacy, max_auc
from tests.conftest import TINY, compose_config, run_in

# canaries planted 20× in one user each, and enough central epochs that a non-private model memorises them
MEMORISING = [
    *TINY,
    "data.n_canaries=40",
    "data.n_fresh_canaries=200",
    "data.canary_repeats=20",
    "train.epochs=10",
    "train.batch_size=64",
    "audit.resamples=200",
]


def _run(tmp_path, overrides):
    return run_in(tmp_path, overrides)


def test_canary_audit_of_a_memorising_model_catches_members_and_records_everything(tmp_path):
    record = _run(tmp_path, [*MEMORISING, "privacy=none", "audit=canary"])
    a = record["audit"]
    assert a["attack"] == "canary" and a["level"] == "user" and a["threat"] == "scores"
    assert a["auc"] > 0.9 and a["auc_ci"][0] <= a["auc"] <= a["auc_ci"][1]
    assert a["tpr_at_1pct_fpr"] > 0.5 and a["control"]["passed"] and a["control"]["ran_on"].startswith("this run")
    assert a["result"] == "measured" and a["accountant_epsilon"] is None and not a["comparable"]
    assert a["relation"] == "add/remove a group of 20 examples inside one user present in both worlds"
    assert a["accountant_comparison"] == {"comparable": False, "reason": "not private: no accountant ε to compare with"}
    assert a["max_auc_permitted"] is None and a["models_trained"] == []  # nothing trained beside the run
    assert a["eps_lower_bound_kind"].startswith("heuristic") and "not a 95% bound" in a["eps_lower_bound_kind"]
    # the control of a non-private run is the run itself, with its own audit section and statistics
    c = a["control"]
    assert c["audit"]["auc"] == a["auc"] and c["audit"]["extraction"] == a["extraction"]
    assert c["audit"]["result"] == "measured" and c["statistics"]["auc"]["caught"]
    assert c["statistics"]["extraction"]["caught"] and c["statistics"]["exposure_by_rank"]["caught"] is None
    c = a["canaries"]  # planted in a held-out user: not trained on, so a non-member like the fresh ones
    assert a["n_members"] == c["planted_in_trained_users"] < c["planted"] == 40
    assert a["n_nonmembers"] == 200 + c["planted"] - c["planted_in_trained_users"]
    trained = a["canaries"]["exposure_by_rank"]["trained_hosts"]
    assert trained["mean"] > a["canaries"]["exposure_by_rank"]["untrained_hosts"]["mean"]
    inputs = a["eps_lower_bound_inputs"]
    assert inputs["tp"] <= inputs["n_pos"] and inputs["fp"] <= inputs["n_neg"] and a["eps_lower_bound"] > 0.5
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = np.load(tmp_path / "audit_scores.npz")
    assert len(saved["scores_0"]) == a["n_members"] + a["n_nonmembers"] == int(saved["members_0"].size)
    assert json.loads((tmp_path / "record.json").read_text())["audit"]["result"] == "measured"
    x = a["extraction"]  # spaced secrets, but the task hashes bigrams: digit pairs pin a secret down
    assert x["n_canaries"] == a["n_members"] and x["space_size"] == 10**6
    assert (
        x["n_extracted"] >= 1 and x["rank"]["min"] == 1 and x["exposure_exact"]["max"] == pytest.approx(np.log2(10**6))
    )


def test_a_weak_attack_is_inconclusive_never_evidence_of_privacy(tmp_path, capsys):
    # one epoch, no repeats to speak of: the loss attack cannot separate users, so the control fails
    record = _run(tmp_path, [*TINY, "privacy=none", "audit=loss", "audit.resamples=200"])
    a = record["audit"]
    assert not a["control"]["passed"] and a["result"] == "inconclusive"
    assert "positive control failed" in a["reason"]
    # ~60 held-out users: TPR at a FPR below 1/60 cannot be measured, and the record and stderr say so
    assert a["n_nonmembers"] < 100
    stats = a["control"]["statistics"]
    assert stats["auc"]["measurable"] and stats["auc"]["caught"] is False
    for key, need in (("tpr_at_1pct_fpr", 100), ("tpr_at_0.1pct_fpr", 1000)):
        assert not stats[key]["measurable"] and stats[key]["caught"] is None
        assert stats[key]["note"].startswith(f"not measurable: needs ≥ {need} non-members, has {a['n_nonmembers']}")
        assert not a["measurable"][key]["measurable"]
    assert f"TPR at 1% FPR not measurable: needs ≥ 100 non-members, has {a['n_nonmembers']}" in capsys.readouterr().err


def test_a_dp_run_gets_a_separate_non_private_control_run(tmp_path):
    record = _run(
        tmp_path,
        [
            *MEMORISING,
            "privacy=dpsgd",
            "privacy.noise_multiplier=2.0",
            "privacy.target_epsilon=null",
            "train.epochs=2",
            "train.batch_size=256",
            "audit=canary",
            "audit.extraction=false",
        ],
    )
    a = record["audit"]
    assert a["control"]["ran_on"] == "control run" and a["control"]["privacy"] == "none"
    assert a["accountant_epsilon"] == record["privacy"]["epsilon"]
    # a canary repeated 20× inside its host is a group of 20 examples: group privacy over 20 steps of the
    # example-level (ε, δ) leaves δ' = δ·Σe^(iε) ≥ 1 here, no guarantee, so nothing to compare with
    cmp = a["accountant_comparison"]
    assert not a["comparable"] and cmp["comparable"] is False and "k = 20" in cmp["reason"]
    assert "no guarantee left" in cmp["reason"] and a["max_auc_permitted"] is None
    assert a["result"] == "measured" and "no accountant ε for this relation" in a["reason"]
    # the control is a model of its own, audited with the same statistics, extraction off as in the run
    c = a["control"]
    assert set(c["audit"]) >= {
        "attack",
        "level",
        "auc",
        "auc_ci",
        "tpr_at_0.1pct_fpr",
        "tpr_at_0.1pct_fpr_ci",
        "tpr_at_1pct_fpr",
        "tpr_at_1pct_fpr_ci",
        "n_members",
        "n_nonmembers",
        "canaries",
        "result",
    }
    assert "extraction" not in c["audit"] and c["passed"] == any(s["caught"] for s in c["statistics"].values())
    assert a["models_trained"] == [
        {"what": "positive control", "private": False, "unit": "example", "delta": None, "events": []}
    ]


def test_control_on_central_validates_the_attack_on_a_central_model_of_the_same_data(tmp_path):
    """A federated run (DP or not) with audit.control_on=central: its control is the central
    non-private model of the same data and seed, i.e. exactly what a central run audits itself on."""
    federated = [
        "mode=federated",
        "federation.rounds=3",
        "audit=canary",
        "audit.extraction=false",
        "audit.control_on=central",
    ]
    central = _run(tmp_path / "central", [*MEMORISING, "privacy=none", "audit=canary", "audit.extraction=false"])
    for privacy in (["privacy=dpfedavg", "privacy.target_epsilon=8"], ["privacy=none"]):
        a = _run(tmp_path / privacy[0], [*MEMORISING, *federated, *privacy])["audit"]
        control = a["control"]
        assert control["ran_on"] == "control run" and control["pipeline"] == "central, no DP"
        assert control["audit"]["tpr_at_1pct_fpr"] == central["audit"]["tpr_at_1pct_fpr"]
        assert control["audit"]["auc"] == central["audit"]["auc"]
        assert control["passed"] == central["audit"]["control"]["passed"]
        assert control["statistics"] == central["audit"]["control"]["statistics"]
    same = _run(tmp_path / "same", [*MEMORISING, *federated[:-1], "privacy=none"])["audit"]["control"]
    assert same["ran_on"] == "this run (not private)" and same["pipeline"] == "federated, no DP"


def test_an_accounting_bug_is_caught_loudly_and_the_run_fails(tmp_path, monkeypatch):
    # DP-SGD with almost no noise, but an accountant that under-reports ε: the audit must refuse it.
    # One copy per canary, so a canary is one example inside its host: directly the example-level ε.
    monkeypatch.setattr("sandbox.privacy.PrivacyBook.epsilon", lambda self: 0.05)
    with pytest.raises(ProbableDPBug, match="PROBABLE DP BUG") as raised:
        _run(
            tmp_path,
            [
                *MEMORISING,
                "data.canary_repeats=1",
                "privacy=dpsgd",
                "privacy.noise_multiplier=0.05",
                "privacy.target_epsilon=null",
                "train.batch_size=64",
                "train.lr=0.01",
                "audit=canary",
                "audit.extraction=false",
                "audit.control=false",
                "privacy.noise_source=seeded",
            ],
        )  # one fixed draw: the test is about the alarm
    record = json.loads((tmp_path / "record.json").read_text())
    a = record["audit"]
    assert record["status"] == "failed" and a["result"] == "dp_bug" and a["verdict_inputs"]["auc_alarm"]
    assert min(a["n_members"], a["n_nonmembers"]) >= 20  # enough targets for the AUC rule
    assert a["accountant_comparison"]["conversion"].endswith("the accountant's relation itself")
    assert a["auc_ci"][0] > a["max_auc_permitted"] == pytest.approx(max_auc(0.05, record["privacy"]["delta"]))
    assert "exceeds" in str(raised.value) and f"{a['max_auc_permitted']:.3f}" in str(raised.value)


@pytest.mark.e2e  # shadow models
def test_lira_and_rmia_run_on_shadows_from_the_same_harness(tmp_path):
    lira = _run(
        tmp_path / "lira",
        [*TINY, "privacy=none", "audit=lira", "audit.shadows=4", "audit.workers=1", "audit.resamples=100"],
    )["audit"]
    assert lira["shadows"] == {"n": 4, "workers": 1, "seconds": lira["shadows"]["seconds"], "engine": "central"}
    assert [m["what"] for m in lira["models_trained"]] == [f"shadow {i}" for i in range(4)]
    assert not any(m["private"] or m["events"] for m in lira["models_trained"])
    assert 0 <= lira["auc"] <= 1 and lira["population"]["units"] == lira["n_members"] + lira["n_nonmembers"]
    rmia = _run(
        tmp_path / "rmia",
        [
            *TINY,
            "privacy=none",
            "audit=rmia",
            "audit.shadows=2",
            "audit.workers=1",
            "audit.online=true",
            "audit.resamples=100",
            "audit.level=example",
        ],
    )["audit"]
    assert rmia["level"] == "example" and rmia["population"]["units"] > rmia["population"]["users"]


def test_keep_mask_puts_every_user_in_exactly_half_the_shadows():
    keep = keep_mask(8, 50, np.random.default_rng(0))
    assert keep.shape == (8, 50) and (keep.sum(axis=0) == 4).all()
    assert not (keep == keep[0]).all()  # shadows differ
    with pytest.raises(ValueError, match="even"):
        keep_mask(3, 5, np.random.default_rng(0))


@pytest.mark.e2e  # shadow models
@pytest.mark.slow
def test_shadows_are_the_same_whatever_the_number_of_worker_processes():
    cfg = resolve(compose_config([*TINY, "privacy=none", "mode=federated", "federation.rounds=2"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    population = build_population(data, level="user")
    one, two = (
        train_shadows(cfg, data, population, n_shadows=2, threat="scores", k=3, workers=w, rng=np.random.default_rng(1))
        for w in (1, 2)
    )
    assert np.array_equal(one.confidence, two.confidence) and np.array_equal(one.keep, two.keep)


@pytest.mark.parametrize(
    "overrides, unit, relation, steps",
    [
        (["mode=federated", "privacy=dpfedavg", "audit=lira"], "user", "add/remove one user", 1),
        # a canary inside a host who trains either way: a replace of that user at user level
        (
            ["mode=federated", "privacy=dpfedavg", "audit=canary"],
            "user",
            "add/remove a group of 3 examples inside one user present in both worlds",
            2,
        ),
        # ...and its 3 copies at example level
        (
            ["privacy=dpsgd", "audit=canary", "data.canary_repeats=3"],
            "example",
            "add/remove a group of 3 examples inside one user present in both worlds",
            3,
        ),
        (
            ["privacy=dpsgd", "audit=canary", "data.canary_repeats=1"],
            "example",
            "add/remove one example inside one user present in both worlds",
            1,
        ),
        # two hosts per canary: 2 × 3 examples, or each host replaced
        (
            ["privacy=dpsgd", "audit=canary", "data.canary_users=2"],
            "example",
            "add/remove a canary's 6 messages: 3 inside each of 2 users present in both worlds",
            6,
        ),
        (
            ["mode=federated", "privacy=dpfedavg", "audit=canary", "data.canary_users=2"],
            "user",
            "add/remove a canary's 6 messages: 3 inside each of 2 users present in both worlds",
            4,
        ),
        # user membership (members are whole users) vs example-level ε: a user is an unbounded group
        (["privacy=dpsgd", "audit=lira"], "example", "add/remove one user", None),
        # the example level toggles whole users too: a user-level (group) test, never example-level ε
        (["privacy=dpsgd", "audit=lira", "audit.level=example"], "example", "add/remove one user", None),
        (["mode=federated", "privacy=dpfedavg", "audit=loss", "audit.level=example"], "user", "add/remove one user", 1),
    ],
)
def test_each_audit_is_compared_with_the_accountant_for_the_relation_it_tests(overrides, unit, relation, steps):
    cfg = resolve(compose_config([*TINY, "data.canary_repeats=3", *overrides]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    rel = audit_relation(cfg, data)
    assert rel.description == relation
    if "audit.level=example" in overrides:
        assert rel.note.startswith("example-level statistics of a user-level (group) test")
    cmp = accountant_comparison(rel, {"epsilon": 1.0, "delta": 1e-5, "unit": unit})
    if steps is None:
        assert cmp["comparable"] is False and "no finite ε follows" in cmp["reason"]
    else:
        eps, delta = group_privacy(1.0, 1e-5, steps)
        assert cmp["relation"] == relation and set(cmp) == {"relation", "epsilon", "delta", "conversion"}
        assert cmp["epsilon"] == pytest.approx(eps) and cmp["delta"] == pytest.approx(delta)
    assert accountant_comparison(rel, {"epsilon": None, "delta": None, "unit": unit})["comparable"] is False


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["audit=lira", "audit.shadows=3"], "audit.shadows"),
        (["audit=loss", "audit.threat=greybox"], "audit.threat"),
        (["audit=loss", "audit.level=workspace"], "audit.level"),
        (["audit.attack=mia"], "audit.attack"),
        (["audit=loss", "audit.threshold_fpr=0"], "audit.threshold_fpr"),
        (["audit=loss", "audit.control_on=federated"], "audit.control_on"),
        (["audit=canary", "audit.one_run_guess_fractions=[0.1,0]"], "audit.one_run_guess_fractions"),
        (["audit=canary", "audit.one_run_guess_fractions=[]"], "audit.one_run_guess_fractions"),
        (["audit=loss", "audit.control_tpr_floor=1.5"], "audit.control_tpr_floor"),
    ],
)
def test_bad_audit_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve(compose_config([*TINY, *overrides]))


def test_bernoulli_canaries_give_the_one_run_bound_on_candidates_whose_host_trained(tmp_path):
    record = _run(
        tmp_path,
        [
            *MEMORISING,
            "data.n_canaries=80",
            "data.canary_inclusion=bernoulli",
            "privacy=none",
            "audit=canary",
            "audit.one_run_guess_fractions=[0.1,0.5,1.0]",
            "audit.extraction=false",
        ],
    )
    c = record["audit"]["canaries"]
    assert 0 < c["left_out_by_coin"] < 80 and c["planted"] + c["left_out_by_coin"] == 80
    assert record["data"]["n_canaries"] == c["planted"]
    one = c["one_run"]
    m = one["m"]
    assert [t["guess_in"] for t in one["tried"]] == [max(1, int(f * m // 2)) for f in (0.1, 0.5, 1.0)]
    assert one["alpha_each"] == pytest.approx(0.05 / 3) and "Bonferroni" in one["correction"]
    best = max(one["tried"], key=lambda t: t["eps_lower_bound"])
    assert one["guesses"] == best["guesses"] == 2 * one["guess_in"] and one["correct"] == best["correct"]
    assert one["correct"] <= one["guesses"] <= m < 80
    assert one["correct"] > 0.8 * one["guesses"]  # a memorising model: almost every guess right
    assert c["one_run_eps_lower_bound"] == record["audit"]["one_run_eps_lower_bound"] == best["eps_lower_bound"] > 0.5


def test_the_one_run_bound_needs_bernoulli_inclusion(tmp_path):
    record = _run(tmp_path, [*MEMORISING, "privacy=none", "audit=canary", "audit.extraction=false"])
    assert record["audit"]["one_run_eps_lower_bound"] is None
    assert "bernoulli" in record["audit"]["canaries"]["one_run_note"]


def test_topk_threat_canary_audit_completes_when_no_distribution_can_be_fitted(tmp_path):
    """threat=topk scores every fresh canary alike (its reaction is not among the few shown): exposure by
    fit is then undefined for them, which the record says, instead of the run crashing."""
    record = _run(
        tmp_path,
        [*TINY, "privacy=none", "audit=canary", "audit.threat=topk", "audit.extraction=false", "audit.resamples=100"],
    )
    fit = record["audit"]["canaries"]["exposure_by_fit"]
    assert "no distribution can be fitted" in fit["note"]
    assert fit["trained_hosts"]["n"] + fit["untrained_hosts"]["n"] < record["audit"]["canaries"]["planted"]


def test_the_auc_alarm_needs_enough_targets():
    """3 canaries against 5 fresh ones separate perfectly by chance 1 time in 56; such a "CI" raises nothing."""
    from sandbox.audit.harness import MIN_AUC_ALARM_TARGETS, enough_for_auc_alarm

    assert not enough_for_auc_alarm(3, 5) and not enough_for_auc_alarm(19, 1000)
    assert enough_for_auc_alarm(MIN_AUC_ALARM_TARGETS, MIN_AUC_ALARM_TARGETS)
