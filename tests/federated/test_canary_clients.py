"""Canary clients inside federated training (sandbox/federated/canary_clients.py) and the audit end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sandbox.config import ConfigError, resolve
from sandbox.config.schema import FederationConfig
from sandbox.federated.aggregate import Update
from sandbox.federated.canary_clients import CANARY_OVERSCALE, CanaryClients, random_directions
from sandbox.federated.server import DPFedAvgSettings, FederatedServer
from sandbox.privacy import PrivacyBook
from tests.conftest import TINY, compose_config, run_in

# -- the observer in the server, without data ------------------------------------------------------
D, N, Q, K, ROUNDS = 400, 60, 0.3, 12, 6


def _server(observers=(), *, dp=True, seed=7):
    cfg = FederationConfig(rounds=ROUNDS, sample_rate=Q, server_optimizer="fedavg")
    return FederatedServer(
        params=torch.zeros(D),
        n_clients=N,
        cfg=cfg,
        dp=DPFedAvgSettings(noise_multiplier=1.0, clip_norm=1.0) if dp else None,
        book=PrivacyBook(unit="user", delta=1e-5, accountant="rdp") if dp else None,
        seed=seed,
        noise_source="seeded",
        observers=observers,
    )


def _drive(server):
    """Every round: fixed random real updates (norm ≈ 2, clipped to 1); (plan clients, released mean) per round."""
    rounds = []
    while (plan := server.next_round()) is not None:
        for c in plan.clients:
            g = torch.Generator().manual_seed(int(c) * 1000 + plan.round)
            server.receive(Update(delta=torch.randn(D, generator=g) * 0.1, n_examples=5, loss=0.0), client=int(c))
        total_before = server._sum.clone()
        server.finish_round()
        rounds.append((plan.clients.copy(), total_before))
    return rounds


def _canaries(**kw):
    args = dict(k=K, initial_params=torch.zeros(D), sample_rate=Q, clip_norm=1.0, private=True, seed=3)
    return CanaryClients(**{**args, **kw})


def test_canaries_leave_the_real_clients_sampling_and_epsilon_unchanged():
    plain, with_canaries = _server(), _server((canary := _canaries(),))
    a, b = _drive(plain), _drive(with_canaries)
    assert [r[0].tolist() for r in a] == [r[0].tolist() for r in b]  # the same real clients every round
    assert plain.book.epsilon() == with_canaries.book.epsilon()
    assert plain.book.events == with_canaries.book.events
    assert with_canaries.extra_clients == K and canary.participation.sum() > 0
    obs = canary.observations()
    assert obs["rounds"] == ROUNDS and sum(obs["rounds_sampled"]) == canary.participation.sum()
    assert obs["never_sampled"] == int((np.array(obs["rounds_sampled"]) == 0).sum())


def test_each_sampled_canary_is_folded_in_at_exactly_the_clip_norm():
    """With seeded noise the two servers draw the same noise, so the released means differ by the canaries
    (each cut by the server from C·10⁴ to C) and by the denominator q·(N + k) instead of q·N."""
    plain = _server()
    canary = _canaries()
    with_canaries = _server((canary,))
    for _ in range(2):
        p1, p2 = plain.next_round(), with_canaries.next_round()
        for server, plan in ((plain, p1), (with_canaries, p2)):
            for c in plan.clients:
                g = torch.Generator().manual_seed(int(c))
                server.receive(Update(delta=torch.randn(D, generator=g) * 0.1, n_examples=5, loss=0.0), client=int(c))
        sampled = canary._sampled.copy()
        x0, x1 = plain.params.clone(), with_canaries.params.clone()
        plain.finish_round()
        with_canaries.finish_round()
        released_plain = (plain.params - x0) * Q * N  # fedavg, lr 1: params move by the noisy mean
        released_canary = (with_canaries.params - x1) * Q * (N + K)
        expected = canary.directions(sampled).sum(0) * 1.0  # each canary at norm C = 1
        assert torch.allclose(released_canary - released_plain, expected, atol=1e-4)
        # real clients' sums were equal: the same clients, the same updates
        assert p1.clients.tolist() == p2.clients.tolist()


def test_directions_are_seeded_unit_vectors_and_the_canary_update_is_over_long():
    u = random_directions(range(6), 5000, seed=11)
    assert torch.allclose(torch.linalg.vector_norm(u, dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(u, random_directions(range(6), 5000, seed=11)) and not torch.equal(
        u, random_directions(range(6), 5000, seed=12)
    )
    c = _canaries()

    class Plan:
        round = 1

    c.on_round_start(Plan)
    for update in c.extra_updates(Plan):
        assert float(torch.linalg.vector_norm(update.delta)) == pytest.approx(CANARY_OVERSCALE, rel=1e-4)
        assert update.unclipped is False  # a clipped (worst-case) client for the adaptive count
    fedavg = _canaries(private=False, example_counts=np.array([1, 2, 9]))
    fedavg.on_round_start(Plan)
    assert all(
        u.n_examples == 4 and float(torch.linalg.vector_norm(u.delta)) == pytest.approx(1.0, rel=1e-4)
        for u in fedavg.extra_updates(Plan)
    )


def test_direction_i_does_not_depend_on_the_others_drawn_with_it():
    block = random_directions(range(6), 700, seed=5)
    assert torch.equal(random_directions([3], 700, seed=5)[0], block[3])
    assert torch.equal(random_directions([4, 1], 700, seed=5), block[[4, 1]])


def test_chunked_statistics_equal_the_cosines_computed_directly(monkeypatch):
    """The final and all-iterates cosines (inserted rows held, null rows drawn in chunks that straddle
    nothing) equal a direct computation with all 2k directions at once, for chunks smaller than k."""
    import sandbox.federated.canary_clients as cc

    monkeypatch.setattr(cc, "DIRECTION_CHUNK", 5)  # k = 12: chunks 5, 5, 2 of inserted, then of null
    server = _server((canary := _canaries(all_iterates=True),))
    deltas = []
    x0 = server.params.clone()
    while (plan := server.next_round()) is not None:
        for c in plan.clients:
            g = torch.Generator().manual_seed(int(c) * 31 + plan.round)
            server.receive(Update(delta=torch.randn(D, generator=g), n_examples=5, loss=0.0), client=int(c))
        before = server.params.clone()
        server.finish_round()
        deltas.append(server.params - before)  # fedavg, lr 1: the released mean delta
    obs = canary.observations()
    every = random_directions(range(2 * K), D, seed=3)
    total = server.params - x0
    direct = (every @ total).double().numpy() / float(torch.linalg.vector_norm(total.double()))
    assert np.allclose(obs["inserted_cosines"] + obs["null_cosines"], direct, atol=1e-6)
    per_round = np.stack([(every @ d).double().numpy() / float(torch.linalg.vector_norm(d.double())) for d in deltas])
    it = obs["all_iterates"]
    assert np.allclose(it["inserted_max_cosines"] + it["null_max_cosines"], per_round.max(0), atol=1e-6)


def test_canary_sampling_rate_is_q():
    c = _canaries(k=2000)

    class Plan:
        round = 0

    for r in range(1, 6):
        Plan.round = r
        c.on_round_start(Plan)
    assert c.participation.mean() / 5 == pytest.approx(Q, abs=0.02)


FED = [*TINY, "mode=federated", "audit=canary_clients", "audit.resamples=200"]


@pytest.mark.parametrize(
    "override, key",
    [
        (["privacy=client_dpsgd"], "privacy.mechanism"),
        (["privacy=none", "audit.control_on=central"], "audit.control_on"),
    ],
)
def test_unmeasurable_configs_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):  # by the config, before any data is built
        resolve(compose_config([*FED, *override]))


def test_too_few_canaries_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="audit.canary_clients"):
        resolve(compose_config([*FED, "privacy=none", "audit.canary_clients=1"]))


# -- tiny runs end to end --------------------------------------------------------------------------
# Five rounds at q = 0.5 (a canary is never sampled with probability 3%); C = 20, far above the real
# updates' norms (~1-4), so that without DP every canary stands out of the final model.
RUN = [*FED, "federation.rounds=5", "federation.sample_rate=0.5", "federation.eval_every=5", "privacy.clip_norm=20"]


def test_fedavg_without_dp_gives_a_huge_estimate_and_is_its_own_control(tmp_path):
    record = run_in(tmp_path, [*RUN, "privacy=none", "audit.canary_clients=20"])
    a = record["audit"]
    assert a["attack"] == "canary_clients" and a["result"] == "measured"
    assert a["n_canaries"] == 20 and record["data"]["extra_clients"] == 20
    assert a["control"]["ran_on"] == "this run (not private)" and a["control"]["passed"]
    assert a["epsilon_estimate_ci"][0] > 50 and a["models_trained"] == []
    assert a["null_check"]["p_value"] > 1e-3  # the never-inserted directions behave as random ones


def test_dp_fedavg_estimate_is_within_the_accountants_epsilon(tmp_path):
    record = run_in(
        tmp_path,
        [
            *RUN,
            "privacy=dpfedavg",
            "privacy.target_epsilon=2",
            "privacy.noise_source=seeded",
            "audit.canary_clients=400",
        ],
    )
    a, eps = record["audit"], record["privacy"]["epsilon"]
    assert a["accountant_epsilon"] == eps and a["relation"] == "add/remove one user"
    assert a["accountant_comparison"]["epsilon"] == eps  # the accountant's relation: no conversion
    # an estimate near a tight accountant (5 rounds at q = 0.5): measured 1.67, CI [0.47, 2.04] at ε = 1.99.
    # The CI's upper end may pass ε (the estimate is not a bound); its lower end must not (the alarm)
    assert a["epsilon_estimate"] <= eps and a["epsilon_estimate_ci"][0] <= eps
    assert a["epsilon_estimate_ci"][1] < 2 * eps
    assert a["control"]["ran_on"] == "control run" and a["control"]["passed"]
    assert a["result"] == "measured" and record["status"] == "completed"
    assert [m["what"] for m in a["models_trained"]] == ["positive control"]
    assert a["population"]["denominator"].startswith("q·(N + k)")


def test_real_clients_accounting_and_sampling_match_a_run_without_canaries(tmp_path):
    common = [*TINY, "mode=federated", *RUN[4:], "privacy=dpfedavg", "privacy.noise_multiplier=1.0"]
    common += ["privacy.target_epsilon=null", "privacy.noise_source=seeded"]
    plain = run_in(tmp_path / "plain", [*common, "audit=none"])
    canary = run_in(
        tmp_path / "canary", [*common, "audit=canary_clients", "audit.canary_clients=10", "audit.control=false"]
    )
    assert canary["privacy"]["epsilon"] == plain["privacy"]["epsilon"]
    assert canary["privacy"]["events"] == plain["privacy"]["events"]
    assert [p["clients"] for p in canary["curve"]] == [p["clients"] for p in plain["curve"]]
    trained = [np.load(tmp_path / name / "trained_users.npy") for name in ("plain", "canary")]
    assert np.array_equal(*trained)
    assert canary["audit"]["result"] == "inconclusive"  # no control: a low estimate proves nothing


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore")
def test_the_flower_simulation_inserts_the_same_canaries(tmp_path):
    tiny = [*FED, "task.n_buckets=1024", "data.n_users=40", "data.n_workspaces=4", "federation.rounds=3"]
    tiny += ["federation.sample_rate=0.5", "federation.eval_every=3", "privacy=none", "audit.canary_clients=6"]
    tiny += ["privacy.clip_norm=20"]
    flower = run_in(tmp_path / "flower", [*tiny, "federation.engine=flower"])
    inproc = run_in(tmp_path / "inprocess", [*tiny, "federation.engine=inprocess"])
    fa, ia = flower["audit"], inproc["audit"]
    assert flower["engine"] == "flower" and fa["rounds_sampled"]["mean"] > 0
    assert fa["rounds_sampled"] == ia["rounds_sampled"]
    assert fa["inserted"]["mean"] == pytest.approx(ia["inserted"]["mean"], rel=1e-3)
    assert fa["inserted"]["mean"] > 10 * fa["null"]["std"]
