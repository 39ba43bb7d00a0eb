"""The federated server: fixed-denominator DP-FedAvg, the stop rule, accounting of what ran."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
import torch

from sandbox.federated.aggregate import Update
from sandbox.federated.server import DPFedAvgSettings, FederatedServer, FederationConfig
from sandbox.privacy import PrivacyBook


def _server(*, n_clients=10, q=0.5, dp=None, rounds=3, optimizer="fedavg", seed=0):
    cfg = FederationConfig(rounds=rounds, sample_rate=q, server_optimizer=optimizer)
    book = PrivacyBook(unit="user", delta=1e-5, accountant="rdp") if dp else None
    return FederatedServer(params=torch.zeros(4), n_clients=n_clients, cfg=cfg, dp=dp, book=book, seed=seed)


def _update(values, n=1, unclipped=True):
    return Update(delta=torch.tensor(values, dtype=torch.float32), n_examples=n, loss=0.0, unclipped=unclipped)


def test_dp_fedavg_divides_by_the_expected_count_not_the_actual_one():
    dp = DPFedAvgSettings(noise_multiplier=1e-9, clip_norm=1.0, clipping_site="server")
    server = _server(n_clients=10, q=0.5, dp=dp)
    plan = server.next_round()
    assert plan.clip_norm is None  # server-side clipping: clients send raw updates
    server.receive(_update([3.0, 4.0, 0, 0]))  # norm 5 → clipped to [0.6, 0.8]
    server.receive(_update([0.1, 0, 0, 0]))
    summary = server.finish_round()
    expected = torch.tensor([0.7, 0.8, 0, 0]) / (0.5 * 10)  # fixed denominator q·N = 5, not 2
    torch.testing.assert_close(server.params, expected, atol=1e-6, rtol=0)
    assert summary["clients"] == 2 and summary["clip_norm"] == 1.0


def test_nonprivate_fedavg_weights_clients_by_examples():
    server = _server()
    server.next_round()
    server.receive(_update([1.0, 0, 0, 0], n=3))
    server.receive(_update([0, 1.0, 0, 0], n=1))
    server.finish_round()
    torch.testing.assert_close(server.params, torch.tensor([0.75, 0.25, 0, 0]))


def test_fedavgm_is_sgd_with_momentum_on_the_pseudo_gradient():
    server = _server(optimizer="fedavgm")
    for _ in range(2):
        server.next_round()
        server.receive(_update([1.0, 0, 0, 0]))
        server.finish_round()
    assert float(server.params[0]) == pytest.approx(1.0 + (0.9 * 1.0 + 1.0))


def test_every_round_is_recorded_and_epsilon_matches_dp_accounting():
    dp = DPFedAvgSettings(noise_multiplier=1.1, clip_norm=1.0)
    server = _server(n_clients=100, q=0.1, dp=dp, rounds=7)
    while (plan := server.next_round()) is not None:
        for _ in plan.clients:
            server.receive(_update([0.1, 0.1, 0, 0]))
        server.finish_round()
    assert server.book.steps == 7 and server.status == "completed"
    event = dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.1))
    independent = dp_accounting.rdp.RdpAccountant()
    independent.compose(dp_accounting.SelfComposedDpEvent(event, 7))
    assert server.book.epsilon() == pytest.approx(independent.get_epsilon(1e-5), rel=1e-3)


def test_training_stops_before_a_round_would_exceed_the_target():
    dp = DPFedAvgSettings(noise_multiplier=1.5, clip_norm=1.0, stop_at_epsilon=2.0)
    server = _server(n_clients=50, q=0.05, dp=dp, rounds=10_000)
    while server.next_round() is not None:
        server.finish_round()
    assert server.status == "stopped_budget"
    assert 0 < server.round < 10_000
    assert server.book.epsilon() <= 2.0
    # one more round would have crossed it
    server.book.record(noise_multiplier=1.5, sample_rate=0.05)
    assert server.book.epsilon() > 2.0


def test_adaptive_clipping_tracks_the_quantile_and_keeps_the_total_noise_accounted():
    dp = DPFedAvgSettings(
        noise_multiplier=1.0,
        clip_norm=10.0,
        clipping="adaptive",
        count_noise_multiplier=5.0,
        clip_lr=0.5,
        target_quantile=0.5,
    )
    server = _server(n_clients=200, q=0.5, dp=dp, rounds=20)
    norms = []
    while (plan := server.next_round()) is not None:
        for _ in plan.clients:  # every update has norm 1: C should fall towards 1
            server.receive(_update([1.0, 0, 0, 0]))
        norms.append(server.finish_round()["clip_norm"])
    assert norms[0] == 10.0 and norms[-1] < 3.0
    (event,) = server.book.events  # one event: the joint multiplier of the two queries is the total z
    assert event.steps == 20 and event.noise_multiplier == pytest.approx(1.0)
    assert dict(event.components)["count"] == 5.0


def test_same_seed_same_plan():
    a, b = _server(seed=4, q=0.3, n_clients=50), _server(seed=4, q=0.3, n_clients=50)
    pa, pb = a.next_round(), b.next_round()
    assert np.array_equal(pa.clients, pb.clients) and pa.client_seeds == pb.client_seeds


def test_client_seeds_depend_on_entropy_round_and_client_only():
    """A client's local seed does not depend on who else was sampled; it changes with round and entropy."""
    from sandbox.federated.server import client_seeds

    alone = client_seeds(7, 3, np.array([5]))
    with_others = client_seeds(7, 3, np.array([900, 5, 0]))
    assert with_others[1] == alone[0] and client_seeds(7, 3, np.array([5])) == alone  # deterministic
    assert client_seeds(7, 4, np.array([5])) != alone and client_seeds(8, 3, np.array([5])) != alone
    many = client_seeds(7, 3, np.arange(10_000))
    assert len(set(many)) > 9_980 and all(0 <= s < 2**32 for s in many)  # 32-bit seeds, nearly all distinct
    assert client_seeds(7, 3, np.zeros(0, dtype=np.int64)) == ()
