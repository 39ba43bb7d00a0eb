"""DP-FTRL's server: the tree noise against its formula, FTRL at z = 0 against FedAvg on the same clients,
the participation rule enforced at runtime, and a tiny end-to-end run from the command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import dp_accounting
import numpy as np
import pytest
import torch

from sandbox.federated.aggregate import Update
from sandbox.federated.ftrl import DPFTRLServer, DPFTRLSettings, ParticipationError, ParticipationSchedule, TreeNoise
from sandbox.federated.server import FederatedServer, FederationConfig
from sandbox.privacy import PrivacyBook
from sandbox.privacy.events import TREE_SAMPLING
from tests.conftest import TINY


def _book():
    return PrivacyBook(unit="user", delta=1e-5, accountant="rdp")


def _server(*, n=12, m=3, k=4, rounds=8, z=1.0, clip=1.0, momentum=0.0, lr=1.0, size=4, schedule=None, **kw):
    cfg = FederationConfig(rounds=rounds, server_lr=lr, server_optimizer="fedavgm" if momentum else "fedavg")
    ftrl = DPFTRLSettings(
        noise_multiplier=z, clip_norm=clip, clients_per_round=m, rounds_per_epoch=k, momentum=momentum
    )
    return DPFTRLServer(
        params=torch.zeros(size), n_clients=n, cfg=cfg, ftrl=ftrl, book=_book(), seed=0, schedule=schedule, **kw
    )


def _update(values):
    return Update(delta=torch.as_tensor(values, dtype=torch.float32), n_examples=1, loss=0.0)


def _popcount(t: int) -> int:
    return bin(t).count("1")


# -- the tree noise ------------------------------------------------------------------------------
def test_prefix_noise_has_popcount_nodes_of_variance_z2c2():
    z, c, size = 1.5, 2.0, 40_000
    tree = TreeNoise(size=size, std=z * c, generator=torch.Generator().manual_seed(7))
    for t in range(1, 17):
        noise = tree.next().double()
        assert tree.nodes == _popcount(t) <= math.floor(math.log2(t)) + 1  # O(log T) vectors held
        expected = z**2 * c**2 * _popcount(t)
        # sample variance of 40k iid N(0, v): relative sd √(2/n) ≈ 0.7%; 5% is > 7 sd
        assert float(noise.var()) == pytest.approx(expected, rel=0.05), t
        assert abs(float(noise.mean())) < 5 * math.sqrt(expected / size)


def _decomposition(t: int) -> set[tuple[int, int]]:
    """The dyadic nodes (first leaf, last leaf) whose sum is the prefix 1..t."""
    nodes, start = set(), 0
    for level in reversed(range(t.bit_length())):
        if t >> level & 1:
            nodes.add((start + 1, start + 2**level))
            start += 2**level
    return nodes


def test_prefix_noises_are_correlated_through_exactly_their_shared_nodes():
    """Cov(N_s, N_t) per coordinate = std² · |nodes(s) ∩ nodes(t)|: each node is one fresh draw, reused by
    every prefix whose binary decomposition contains it (N_7 = [1..4] + [5..6] + [7], N_5 = [1..4] + [5])."""
    tree = TreeNoise(size=40_000, std=1.0, generator=torch.Generator().manual_seed(1))
    n = {t: tree.next().double() for t in range(1, 9)}
    for s_ in range(1, 9):
        for t in range(s_, 9):
            shared = len(_decomposition(s_) & _decomposition(t))
            assert float((n[s_] * n[t]).mean()) == pytest.approx(shared, abs=0.06), (s_, t)
    tree.restart()
    assert tree.nodes == 0 and float(tree.next().double().var()) == pytest.approx(1.0, rel=0.05)


def test_the_servers_model_noise_is_the_tree_noise_with_std_z_c():
    """Zero updates, m = 1, server_lr 1: θ_t − θ_0 is the prefix noise, variance z²C²·popcount(t)."""
    z, c, size = 0.8, 1.5, 40_000
    server = _server(n=8, m=1, k=8, rounds=8, z=z, clip=c, size=size, noise_source="seeded")
    while (plan := server.next_round()) is not None:
        for client in plan.clients:
            server.receive(_update(torch.zeros(size)), client=int(client))
        server.finish_round()
        t = server.round
        assert float(server.params.double().var()) == pytest.approx(z**2 * c**2 * _popcount(t), rel=0.05), t


# -- z = 0: plain FTRL is FedAvg on the same clients ---------------------------------------------
def _drive(ftrl, fedavg, rounds, *, size=4):
    gen = torch.Generator().manual_seed(3)
    while (plan := ftrl.next_round()) is not None:
        updates = {int(c): torch.randn(size, generator=gen) * 0.3 for c in plan.clients}
        for client, delta in updates.items():
            ftrl.receive(_update(delta), client=client)
        fedavg.next_round()
        for client, delta in updates.items():  # the same clients' updates (norms below C: no clipping)
            assert float(delta.norm()) <= 5.0
            fedavg.receive(_update(delta), client=client)
        ftrl.finish_round()
        fedavg.finish_round()
        yield ftrl.params, fedavg.params


@pytest.fixture
def no_accounting(monkeypatch):
    """z = 0 has no finite ε (the book refuses it): here only the model is compared."""
    monkeypatch.setattr(PrivacyBook, "record_tree_round", lambda self, **kw: None)
    monkeypatch.setattr(PrivacyBook, "epsilon", lambda self, *a, **kw: math.inf)


def test_at_z_zero_ftrl_equals_fedavg_across_restarts(no_accounting):
    ftrl = _server(n=12, m=3, k=4, rounds=10, z=0.0, clip=5.0, lr=0.7)
    fedavg = FederatedServer(
        params=torch.zeros(4),
        n_clients=12,
        cfg=FederationConfig(rounds=10, sample_rate=1.0, server_optimizer="fedavg", server_lr=0.7),
        dp=None,
        book=None,
        seed=0,
    )
    for ours, theirs in _drive(ftrl, fedavg, 10):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    assert ftrl.trees == 3  # restarted after rounds 4 and 8


def test_at_z_zero_dp_ftrlm_equals_fedavgm_within_a_tree(no_accounting):
    ftrl = _server(n=30, m=3, k=10, rounds=10, z=0.0, clip=5.0, momentum=0.9, lr=0.5)
    fedavgm = FederatedServer(
        params=torch.zeros(4),
        n_clients=30,
        cfg=FederationConfig(
            rounds=10, sample_rate=1.0, server_optimizer="fedavgm", server_momentum=0.9, server_lr=0.5
        ),
        dp=None,
        book=None,
        seed=0,
    )
    for ours, theirs in _drive(ftrl, fedavgm, 10):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_updates_are_clipped_to_c_and_divided_by_the_fixed_m(no_accounting):
    server = _server(n=12, m=3, k=4, rounds=1, z=0.0, clip=1.0)
    plan = server.next_round()
    server.receive(_update([3.0, 4.0, 0, 0]), client=int(plan.clients[0]))  # clipped to [0.6, 0.8]
    server.receive(_update([0.1, 0, 0, 0]), client=int(plan.clients[1]))  # the third client dropped out
    server.finish_round()
    torch.testing.assert_close(server.params, torch.tensor([0.7, 0.8, 0, 0]) / 3)


# -- the participation rule, enforced -----------------------------------------------------------
def test_the_default_schedule_gives_every_client_at_most_one_round_per_tree():
    server = _server(n=13, m=3, k=4, rounds=11, z=1.0)
    while (plan := server.next_round()) is not None:
        for client in plan.clients:
            server.receive(_update(torch.zeros(4)), client=int(client))
        server.finish_round()
    record = server.participation_record()
    assert record["max_participations_per_tree"] == 1 and record["trees"] == 3 and record["restarts"] == 2
    assert [e.steps for e in server.book.events] == [4, 4, 3]
    # dp_accounting directly: three trees, one short
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(1.0, 4), 2)
    accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(1.0, 3))
    assert server.book.epsilon() == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)


@pytest.mark.parametrize("order", ["shuffled", "cyclic"])
def test_schedules_are_disjoint_within_an_epoch(order):
    schedule = ParticipationSchedule(
        n_clients=10, clients_per_round=3, rounds_per_epoch=3, order=order, rng=np.random.default_rng(0)
    )
    epochs = [[schedule(r) for r in range(1 + 3 * e, 4 + 3 * e)] for e in range(3)]
    for rounds in epochs:
        together = np.concatenate(rounds)
        assert len(np.unique(together)) == len(together) == 9
    same = all(np.array_equal(a, b) for a, b in zip(epochs[0], epochs[1], strict=True))
    assert same == (order == "cyclic")


def test_a_schedule_that_plans_a_client_twice_in_one_tree_is_refused():
    plans = {1: [0, 1, 2], 2: [3, 4, 0]}  # client 0 again in round 2 of the same tree
    server = _server(n=12, m=3, k=4, schedule=lambda r: np.array(plans[r]))
    plan = server.next_round()
    for client in plan.clients:
        server.receive(_update(torch.zeros(4)), client=int(client))
    server.finish_round()
    with pytest.raises(ParticipationError, match=r"client\(s\) \[0\] already took part in this tree"):
        server.next_round()


def test_after_a_restart_the_same_client_may_take_part_again():
    server = _server(n=12, m=3, k=1, rounds=3, schedule=lambda r: np.array([0, 1, 2]))
    while (plan := server.next_round()) is not None:
        for client in plan.clients:
            server.receive(_update(torch.zeros(4)), client=int(client))
        server.finish_round()
    assert server.trees == 3 and server.participation_record()["max_participations_per_tree"] == 1


def test_an_update_from_a_client_outside_the_plan_or_twice_is_refused():
    server = _server(n=12, m=3, k=4)
    plan = server.next_round()
    first = int(plan.clients[0])
    outsider = next(c for c in range(12) if c not in set(plan.clients.tolist()))
    with pytest.raises(ParticipationError, match="not in the round's plan"):
        server.receive(_update(torch.zeros(4)), client=outsider)
    server.receive(_update(torch.zeros(4)), client=first)
    with pytest.raises(ParticipationError, match="already delivered"):
        server.receive(_update(torch.zeros(4)), client=first)
    with pytest.raises(ParticipationError, match="needs each update's client"):
        server.receive(_update(torch.zeros(4)))


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.e2e
def test_a_tiny_dpftrl_run_writes_the_record_it_ran(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            *TINY,
            "mode=federated",
            "privacy=dpftrl",
            "privacy.clients_per_round=40",
            "privacy.target_epsilon=3.0",
            "federation.rounds=7",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "record.json").read_text())
    p = record["privacy"]
    assert p["mechanism"] == "dpftrl" and p["unit"] == "user" and p["accountant"] == "rdp"
    assert p["sampling"] == TREE_SAMPLING and p["sample_rate"] is None and p["noise_source"] == "secure"
    assert "REPLACE_SPECIAL" in p["neighbouring_relation"]
    n_clients = record["data"]["n_clients"]
    k = n_clients // 40
    part = p["participation"]
    assert part["rounds_per_epoch"] == k and part["clients_per_round"] == 40
    assert part["max_participations_per_tree"] == 1 and part["trees"] == -(-7 // k)
    assert part["restarts"] == part["trees"] - 1
    assert [e["steps"] for e in p["events"]] == [k] * (7 // k) + ([7 % k] if 7 % k else [])
    # ε: dp_accounting built here from what the record says ran; the target was met
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    for e in p["events"]:
        accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(e["noise_multiplier"], e["steps"]))
    assert p["epsilon"] == pytest.approx(accountant.get_epsilon(p["delta"]), rel=1e-9)
    assert 3.0 - 1e-3 < p["epsilon"] <= 3.0 + 1e-9
    assert p["delta"] == 10 ** math.floor(math.log10(1 / (10 * n_clients)))  # DP-FedAvg's δ over the clients
    assert "sampling none" in proc.stdout


@pytest.mark.e2e
def test_a_refused_dpftrl_config_exits_3_naming_the_key(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            *TINY,
            "mode=federated",
            "privacy=dpftrl",
            "privacy.max_participations_per_tree=2",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: privacy.max_participations_per_tree:") and "Traceback" not in proc.stderr
    assert not (out / "record.json").exists()
