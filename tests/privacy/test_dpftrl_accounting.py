"""DP-FTRL's accounting: ε against dp_accounting built directly in the test, z calibration, and the
participation patterns (and accountants) that are refused rather than approximated."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant

from sandbox.config import ConfigError, resolve
from sandbox.privacy import PrivacyBook, UnsupportedAccountingError, epsilon_for
from sandbox.privacy.events import SubsampledGaussianEvent, TreeAggregationEvent, event_from_json
from sandbox.privacy.ledger import ModelSpend, _at_unit
from sandbox.privacy.plan import PlanInputError, plan_dpftrl, plan_for
from sandbox.privacy.tree import tree_epsilon, tree_noise_multiplier_for
from tests.conftest import TINY, compose_config


def direct_epsilon(z: float, rounds: int, k: int, delta: float) -> float:
    """What dp_accounting says, built here without the sandbox: ⌊T/k⌋ full trees + one of T mod k rounds."""
    full, rest = divmod(rounds, k)
    trees = [dp_accounting.SelfComposedDpEvent(dp_accounting.SingleEpochTreeAggregationDpEvent(z, k), full)]
    if rest:
        trees.append(dp_accounting.SingleEpochTreeAggregationDpEvent(z, rest))
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_accounting.ComposedDpEvent(trees))
    return accountant.get_epsilon(delta)


CONFIGS = [  # (z, N, m, T, k or None, δ)
    (1.0, 1000, 50, 45, None, 1e-4),  # k = 20: trees of 20, 20, 5
    (2.5, 10_000, 100, 100, 100, 1e-5),  # one tree
    (0.7, 500, 10, 130, 25, 1e-4),  # 5 full trees + 5
    (4.0, 300, 300, 7, None, 1e-3),  # k = 1: every round its own tree (every client every round)
]


@pytest.mark.parametrize("z, n, m, rounds, k, delta", CONFIGS)
def test_planned_and_recorded_epsilon_are_dp_accounting_directly(z, n, m, rounds, k, delta):
    plan = plan_dpftrl(
        n_clients=n, clients_per_round=m, rounds=rounds, rounds_per_epoch=k, noise_multiplier=z, delta=delta
    )
    per_tree = k or n // m
    expected = direct_epsilon(z, rounds, per_tree, delta)
    assert plan.planned_epsilon == pytest.approx(expected, rel=1e-12)
    # the book, fed round by round as the server feeds it, restarting every k rounds
    book = PrivacyBook(unit="user", delta=delta, accountant="rdp")
    for r in range(rounds):
        book.record_tree_round(noise_multiplier=z, new_tree=r % per_tree == 0)
    assert book.steps == rounds and len(book.events) == -(-rounds // per_tree)
    assert book.epsilon() == pytest.approx(expected, rel=1e-12)
    # and from its JSON (the record's events, the ledger's entry)
    again = [event_from_json(e.to_json()) for e in book.events]
    assert epsilon_for(events=again, delta=delta, accountant="rdp") == pytest.approx(expected, rel=1e-12)
    assert PrivacyBook.from_state_dict(book.state_dict()).epsilon() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("target", [1.0, 4.0, 8.0])
def test_calibrated_z_hits_the_target_epsilon(target):
    plan = plan_dpftrl(n_clients=2000, clients_per_round=100, rounds=60, target_epsilon=target, delta=1e-5)
    eps = direct_epsilon(plan.noise_multiplier, 60, 20, 1e-5)
    assert target - 1e-3 < eps <= target + 1e-9
    assert plan.calibrated and plan.planned_epsilon == pytest.approx(eps, rel=1e-12)
    # a smaller z would overshoot: the calibration is (nearly) the smallest z within the target
    assert direct_epsilon(plan.noise_multiplier * 0.999, 60, 20, 1e-5) > target


def test_more_than_one_participation_per_tree_is_refused_not_approximated():
    # k·m > N: some client would be in two rounds of one tree
    with pytest.raises(PlanInputError, match="rounds_per_epoch") as info:
        plan_dpftrl(
            n_clients=100, clients_per_round=10, rounds=20, rounds_per_epoch=11, noise_multiplier=1.0, delta=1e-3
        )
    assert info.value.key == "rounds_per_epoch"
    with pytest.raises(PlanInputError, match="max_participations_per_tree"):
        plan_dpftrl(
            n_clients=100,
            clients_per_round=10,
            rounds=20,
            noise_multiplier=1.0,
            delta=1e-3,
            max_participations_per_tree=2,
        )
    with pytest.raises(UnsupportedAccountingError, match="at most once per tree"):
        TreeAggregationEvent(noise_multiplier=1.0, steps=10, max_participations=2)
    with pytest.raises(UnsupportedAccountingError, match="rdp"):
        tree_epsilon(events=[TreeAggregationEvent(noise_multiplier=1.0, steps=3)], delta=1e-5, accountant="prv")
    with pytest.raises(UnsupportedAccountingError, match="rdp"):
        epsilon_for(events=[TreeAggregationEvent(noise_multiplier=1.0, steps=3)], delta=1e-5, accountant="gdp")


FEDERATED = [*TINY, "mode=federated", "privacy=dpftrl", "privacy.clients_per_round=20"]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["privacy.max_participations_per_tree=2"], "privacy.max_participations_per_tree"),
        (["privacy.tree_restart=never"], "privacy.tree_restart"),
        (["privacy.accountant=prv"], "privacy.accountant"),
        (["privacy.clients_per_round=null"], "privacy.clients_per_round"),
        (["privacy.noise_multiplier=1.0"], "privacy"),  # σ and a target: DP-FTRL has no stop rule
        (["privacy.clipping=adaptive"], "privacy.clipping"),
        (["privacy.participation=poisson"], "privacy.participation"),
        (["federation.server_optimizer=fedadam"], "federation.server_optimizer"),
        (["audit=canary_clients"], "audit.attack"),  # canary clients are Poisson-sampled
        (["mode=central"], "privacy"),
    ],
)
def test_unsupported_combinations_are_config_errors_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.") + ":"):
        resolve(compose_config([*FEDERATED, *overrides]))


def test_plan_for_names_the_config_key_of_a_schedule_that_needs_two_participations():
    cfg = resolve(compose_config([*FEDERATED, "privacy.rounds_per_epoch=6"]))
    with pytest.raises(ConfigError, match=r"^privacy\.rounds_per_epoch:"):
        plan_for(cfg, n_clients=100)  # 6 × 20 > 100
    assert plan_for(cfg, n_clients=120).rounds_per_epoch == 6


def test_the_ledger_composes_tree_and_poisson_spends_in_one_rdp_accountant():
    tree = TreeAggregationEvent(noise_multiplier=2.0, steps=10).to_json()
    poisson = SubsampledGaussianEvent(noise_multiplier=1.0, sample_rate=0.01, steps=100).to_json()
    runs = [
        [ModelSpend(what="dpftrl", private=True, unit="user", delta=1e-5, events=(tree, tree))],
        [ModelSpend(what="dpfedavg", private=True, unit="user", delta=1e-5, events=(poisson,))],
    ]
    got = _at_unit(runs, "user")
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(2.0, 10), 2)
    accountant.compose(dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)), 100)
    assert got.epsilon == pytest.approx(accountant.get_epsilon(2e-5), rel=1e-12)
    assert tree_noise_multiplier_for(target_epsilon=4.0, delta=1e-5, steps=(10, 10)) > 0
