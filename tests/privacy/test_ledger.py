"""The privacy ledger: runs on one data set compose, non-private training is ∞, a total is enforced."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from sandbox.budget import main as budget_main
from sandbox.config import ConfigError, resolve
from sandbox.prepare import Seeds, prepare
from sandbox.privacy.ledger import ALL_UNITS, LedgerError, PrivacyLedger, Spend
from sandbox.run import planned_epsilon, planned_spend, spend_of
from tests.conftest import TINY, compose_config, run_in

REPO = Path(__file__).resolve().parents[2]
EVENT = {"noise_multiplier": 1.2, "sample_rate": 0.05, "steps": 40, "sampling": "poisson"}


def _private(dataset="d1", unit="user", times=1, delta=1e-5, event=EVENT) -> Spend:
    return Spend(dataset=dataset, unit=unit, private=True, events=((event, times),), delta=delta, what="training")


def _opacus_rdp(steps_by_sigma_q: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    for sigma, q, steps in steps_by_sigma_q:
        accountant.history.append((sigma, q, steps))
    return accountant.get_epsilon(delta=delta)


def test_runs_on_one_data_set_compose_like_steps(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.json")
    other = {**EVENT, "noise_multiplier": 0.9, "steps": 10}
    ledger.record(_private(), run_dir="a", epsilon=None)
    ledger.record(_private(event=other, times=3), run_dir="b", epsilon=None)
    ledger.record(_private(dataset="d2"), run_dir="c", epsilon=None)  # another data set: separate
    eps, delta, n = ledger.spent("d1", "user")
    assert n == 2 and delta == pytest.approx(2e-5)
    expected = _opacus_rdp([(1.2, 0.05, 40), (0.9, 0.05, 10), (0.9, 0.05, 10), (0.9, 0.05, 10)], 2e-5)
    assert eps == pytest.approx(expected, rel=1e-9)
    alone = _opacus_rdp([(1.2, 0.05, 40)], 1e-5)
    assert ledger.spent("d2", "user")[0] == pytest.approx(alone)
    assert ledger.spent("d3", "user") == (0.0, 0.0, 0)


def test_a_user_level_run_and_an_example_level_run_compose_at_both_units(tmp_path):
    """The documented totals, by hand: the user-level spend counts at example level by group privacy
    with k = 2 (removing one example of a user present in both worlds replaces that user); the
    example-level spend counts at user level as ∞ (no per-user cap)."""
    ledger = PrivacyLedger(tmp_path / "ledger.json")
    ex_event = {**EVENT, "noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 300}
    ledger.record(_private(unit="user", delta=1e-5), run_dir="fed", epsilon=None)
    ledger.record(_private(unit="example", delta=1e-7, event=ex_event), run_dir="central", epsilon=None)
    eps_user = _opacus_rdp([(1.2, 0.05, 40)], 1e-5)
    eps_example = _opacus_rdp([(1.0, 0.01, 300)], 1e-7)
    eps, delta, n = ledger.spent("d1", "example")
    assert n == 2
    assert eps == pytest.approx(eps_example + 2 * eps_user, rel=1e-9)
    assert delta == pytest.approx(1e-7 + (1 + math.exp(eps_user)) * 1e-5, rel=1e-9)
    assert math.isinf(ledger.spent("d1", "user")[0])
    assert ledger.spent("d1", "workspace")[0] == math.inf  # a workspace is a group of users, no cap
    assert set(ledger.promised_units("d1")) == {"example", "user"}
    table = ledger.table()
    assert f"{eps_example + 2 * eps_user:.3f}" in table and "∞" in table


def test_the_total_refuses_a_run_whichever_unit_it_uses(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.json")
    ledger.record(_private(unit="user"), run_dir="fed", epsilon=None)
    spent_user = ledger.spent("d1", "user")[0]  # ≈ 1.1
    total = spent_user + 1.0
    user_run = Spend(dataset="d1", unit="user", private=True, what="training")
    example_run = Spend(dataset="d1", unit="example", private=True, what="training")
    # within the total at user level, and at example level (2·ε_user + 0.5 < total? no: refused there)
    assert ledger.check(user_run, planned_epsilon=0.5, total=total, on_exceed="refuse") is None
    with pytest.raises(LedgerError, match=r"\(user level\).*past ledger\.total_epsilon"):
        ledger.check(user_run, planned_epsilon=1.5, total=total, on_exceed="refuse")
    # an example-level run cannot bypass it: at user level it is ∞ (a user is a group of examples)
    with pytest.raises(LedgerError, match=r"\(user level\).*may add up to ε = ∞"):
        ledger.check(example_run, planned_epsilon=0.01, total=100.0, on_exceed="refuse")
    # and at example level the user-level spend counts twice (group privacy, k = 2)
    fresh = PrivacyLedger(tmp_path / "fresh.json")
    fresh.record(_private(unit="example"), run_dir="central", epsilon=None)
    spent_example = fresh.spent("d1", "example")[0]
    with pytest.raises(LedgerError, match=r"\(example level\).*may add up to ε = 1"):
        fresh.check(
            Spend(dataset="d1", unit="user", private=True, what="training"),
            planned_epsilon=0.5,
            total=spent_example + 0.9,
            on_exceed="refuse",
        )
    # …and the user-level total of that data set is already ∞ (its example-level run protects no user)
    with pytest.raises(LedgerError, match=r"\(user level\) has spent ε = ∞"):
        fresh.check(
            Spend(dataset="d1", unit="user", private=True, what="training"),
            planned_epsilon=0.1,
            total=100.0,
            on_exceed="refuse",
        )
    # a fresh data set: an example-level run is checked at its own unit only
    assert (
        PrivacyLedger(tmp_path / "none.json").check(example_run, planned_epsilon=1.0, total=2.0, on_exceed="refuse")
        is None
    )


def test_version_1_ledgers_are_still_read(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": [
                    {
                        "dataset": "d1",
                        "unit": "user",
                        "private": True,
                        "events": [{"event": EVENT, "times": 2}],
                        "delta": 1e-5,
                        "what": "training + 1 shadow models",
                        "run_dir": "a",
                        "run_epsilon": 1.0,
                    }
                ],
            }
        )
    )
    eps, delta, n = PrivacyLedger(path).spent("d1", "user")
    assert n == 1 and eps == pytest.approx(_opacus_rdp([(1.2, 0.05, 80)], 1e-5), rel=1e-9)


def test_non_private_training_makes_the_data_set_infinite_for_every_unit(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.json")
    ledger.record(_private(), run_dir="a", epsilon=1.0)
    ledger.record(Spend(dataset="d1", unit=ALL_UNITS, private=False, what="training"), run_dir="b", epsilon=None)
    for unit in ("example", "user", "workspace"):
        assert math.isinf(ledger.spent("d1", unit)[0])
    assert "∞ (non-private)" in ledger.table()


def test_check_refuses_past_the_total_and_warns_when_asked(tmp_path):
    ledger = PrivacyLedger(tmp_path / "ledger.json")
    ledger.record(_private(), run_dir="a", epsilon=None)
    spent = ledger.spent("d1", "user")[0]
    assert ledger.check(_private(), planned_epsilon=1.0, total=spent + 1.0 + 1e-9, on_exceed="refuse") is None
    with pytest.raises(LedgerError, match=r"has spent ε = .* in 1 run\(s\).*past ledger\.total_epsilon"):
        ledger.check(_private(), planned_epsilon=1.0, total=spent + 0.5, on_exceed="refuse")
    warning = ledger.check(_private(), planned_epsilon=50.0, total=3.0, on_exceed="warn")
    assert "past ledger.total_epsilon = 3" in warning
    assert ledger.check(_private(), planned_epsilon=50.0, total=None, on_exceed="refuse") is None  # track only
    ok = Spend(dataset="d1", unit=ALL_UNITS, private=False)
    with pytest.raises(LedgerError, match="a non-private model"):
        ledger.check(ok, planned_epsilon=math.inf, total=100.0, on_exceed="refuse")


def test_an_unreadable_ledger_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(LedgerError, match="unreadable"):
        PrivacyLedger(path).entries()
    assert budget_main(["--ledger", str(path)]) == 3


def _cfg(overrides):
    return resolve(compose_config([*TINY, *overrides]))


def test_planned_spend_counts_the_audit_models():
    base = ["mode=federated", "privacy=dpfedavg", "privacy.target_epsilon=2", "federation.rounds=3"]
    cfg = _cfg([*base, "audit=lira", "audit.shadows=4", "audit.control=false"])
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    assert planned_epsilon(cfg, data) == pytest.approx(2.0 * 5)  # the run and 4 private shadows
    spend = planned_spend(cfg, data)
    assert spend.private and spend.unit == "user" and "4 shadow models" in spend.what
    record = {"privacy": {"epsilon": 2.0, "unit": "user", "delta": 1e-4, "events": [EVENT]}}
    models = spend_of(cfg, data, record).all_models()  # an audit that does not list its models: as planned
    assert [(m.events, m.times, m.unit) for m in models] == [((EVENT,), 1, "user"), ((EVENT,), 4, "user")]
    shadow = {**EVENT, "noise_multiplier": 1.7}  # shadows ran their own σ and δ: charged with those
    listed = {
        **record,
        "audit": {
            "models_trained": [
                {"what": f"shadow {i}", "private": True, "unit": "user", "delta": 2e-4, "events": [shadow]}
                for i in range(4)
            ]
        },
    }
    models = spend_of(cfg, data, listed).all_models()
    assert [m.events for m in models] == [(EVENT,)] + [(shadow,)] * 4 and models[1].delta == 2e-4
    with_control = _cfg([*base, "audit=loss"])  # a DP run's positive control trains without DP
    assert math.isinf(planned_epsilon(with_control, data))
    assert not planned_spend(with_control, data).private
    sigma = _cfg(
        [
            "mode=federated",
            "privacy=dpfedavg",
            "privacy.noise_multiplier=1.0",
            "privacy.target_epsilon=null",
            "federation.rounds=3",
        ]
    )
    expected = _opacus_rdp([(1.0, sigma.federation.sample_rate, 3)], 1e-4)  # TINY: 240 users -> δ = 1e-4
    assert planned_epsilon(sigma, data) == pytest.approx(expected, rel=1e-6)


def _run(tmp_path, name, overrides, ledger):
    return run_in(tmp_path / name, [*TINY, f"ledger.path={ledger}", *overrides])


def test_the_ledger_refuses_a_run_that_would_pass_the_total_and_keeps_nothing(tmp_path):
    ledger = tmp_path / "ledger.json"
    dp = ["mode=federated", "privacy=dpfedavg", "privacy.target_epsilon=2", "federation.rounds=2"]
    record = _run(tmp_path, "first", [*dp, "ledger.total_epsilon=3"], ledger)
    entries = json.loads(ledger.read_text())["entries"]
    assert len(entries) == 1 and entries[0]["dataset"] == record["data"]["fingerprint"]
    assert entries[0]["models"][0]["events"][0] == record["privacy"]["events"][0]
    with pytest.raises(LedgerError, match=r"past ledger\.total_epsilon = 3"):
        _run(tmp_path, "second", [*dp, "ledger.total_epsilon=3"], ledger)
    assert not (tmp_path / "second" / "record.json").exists()
    assert len(json.loads(ledger.read_text())["entries"]) == 1  # the refused run spent nothing
    # through the CLI: exit 3 (bad input), one error line, no traceback, no record
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            *TINY,
            *dp,
            "ledger.total_epsilon=3",
            f"ledger.path={ledger}",
            f"hydra.run.dir={tmp_path / 'cli'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: privacy ledger") and not (tmp_path / "cli" / "record.json").exists()
    shown = subprocess.run(
        [sys.executable, "-m", "sandbox.budget", "--ledger", str(ledger)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and record["data"]["fingerprint"][:12] in shown.stdout
    assert f"{record['privacy']['epsilon']:.3f}"[:3] in shown.stdout


def test_the_end_of_run_summary_says_what_a_run_did_to_the_ledger(tmp_path):
    from sandbox.summary import describe_run

    ledger = tmp_path / "ledger.json"
    first = _run(tmp_path, "first", ["privacy.target_epsilon=2"], ledger)
    eps = first["privacy"]["epsilon"]
    assert first["ledger"]["epsilon"] == [{"unit": "example", "before": 0.0, "after": pytest.approx(eps)}]
    assert f"example level 0.000 → {eps:.3f}" in describe_run(first, tmp_path / "first")
    # a DP run audited with a non-private control: the data set's ε becomes unbounded, and the summary says so
    second = _run(tmp_path, "second", ["privacy.target_epsilon=2", "audit=loss", "audit.resamples=100"], ledger)
    change = second["ledger"]["epsilon"]
    assert change == [{"unit": "example", "before": pytest.approx(eps), "after": None}]
    text = describe_run(second, tmp_path / "second")
    assert f"example level {eps:.3f} → ∞ (a non-private training" in text and "non-private model" in text
    # nothing changed, nothing said: a run without a ledger
    assert "ledger:" not in describe_run(run_in(tmp_path / "third", [*TINY, "ledger.path=null"]), tmp_path)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["ledger.on_exceed=ignore"], "ledger.on_exceed"),
        (["ledger.total_epsilon=0"], "ledger.total_epsilon"),
    ],
)
def test_bad_ledger_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _cfg(overrides)


def test_tests_keep_their_ledger_out_of_the_repository():
    assert os.environ["SANDBOX_LEDGER"] and not Path(os.environ["SANDBOX_LEDGER"]).is_relative_to(REPO)
    assert resolve(compose_config(TINY)).ledger.path == os.environ["SANDBOX_LEDGER"]


def _append_many(path: str, worker: int, n: int) -> None:
    ledger = PrivacyLedger(path)
    for i in range(n):
        ledger.record(
            Spend(dataset="d" * 64, unit=ALL_UNITS, private=False, what=f"worker {worker} run {i}"),
            run_dir=f"run-{worker}-{i}",
            epsilon=None,
        )


def test_concurrent_appends_from_two_processes_keep_every_entry(tmp_path):
    import multiprocessing

    path = str(tmp_path / "ledger.json")
    context = multiprocessing.get_context("spawn")  # no forked torch state
    workers = [context.Process(target=_append_many, args=(path, w, 50)) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=240)
        assert p.exitcode == 0
    entries = PrivacyLedger(path).entries()
    assert sorted(e["run_dir"] for e in entries) == sorted(f"run-{w}-{i}" for w in range(2) for i in range(50))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind
