"""Client-level DP-SGD on one client: Opacus' DP-SGD step, dense noise, empty Poisson batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from sandbox.federated.aggregate import Update
from sandbox.federated.client import ClientData, LocalConfig
from sandbox.federated.client_dp import LocalDPSGD, PrivateLocalTrainer, local_steps
from sandbox.federated.server import FederatedServer, FederationConfig
from sandbox.privacy import PrivacyBook
from sandbox.tasks import emoji

CFG = emoji.EmojiTaskConfig(n_buckets=128, max_tokens=6, embedding_dim=8, hidden_dim=8)


def _setup(dp: LocalDPSGD, lr=0.3):
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=CFG, n_classes=5)
    params = parameters_to_vector(model.parameters()).detach().clone()
    data = ClientData(tokens=torch.randint(1, 40, (6, 6)), labels=torch.randint(0, 5, (6,)))
    trainer = PrivateLocalTrainer(model, LocalConfig(lr=lr), dp)
    trainer.load(params)
    return trainer, params, data


def test_with_full_batch_no_clipping_and_negligible_noise_it_is_one_sgd_step():
    trainer, params, data = _setup(LocalDPSGD(noise_multiplier=1e-12, clip_norm=1e3, sample_rate=1.0, steps=1))
    update = trainer.update(data, generator=torch.Generator().manual_seed(0))
    reference = emoji.EmojiModel(config=CFG, n_classes=5)
    torch.nn.utils.vector_to_parameters(params.clone(), reference.parameters())
    nn.functional.cross_entropy(reference(data.tokens), data.labels).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    torch.testing.assert_close(update.delta, -0.3 * grad, atol=1e-6, rtol=1e-5)


def test_each_example_is_clipped_then_the_sum_divided_by_the_expected_batch():
    # a tiny clip norm: each per-example gradient is scaled to norm C, so the step's norm is ≤ lr·C·n/(q·n)
    trainer, _, data = _setup(LocalDPSGD(noise_multiplier=1e-6, clip_norm=1e-3, sample_rate=1.0, steps=1))
    update = trainer.update(data, generator=torch.Generator().manual_seed(0))
    assert 0 < float(update.delta.norm()) <= 0.3 * 1e-3 * (1 + 1e-4)


def test_noise_covers_every_coordinate_and_matches_sigma_c_over_expected_batch():
    sigma, clip, q, lr = 2.0, 0.5, 0.5, 0.3
    trainer, params, data = _setup(LocalDPSGD(noise_multiplier=sigma, clip_norm=clip, sample_rate=q, steps=1), lr=lr)
    update = trainer.update(data, generator=torch.Generator().manual_seed(1))
    untouched = update.delta[40 * 8 : 128 * 8]  # embedding rows no example uses: pure noise
    assert bool((untouched != 0).all())
    expected_std = lr * sigma * clip / (q * len(data))
    assert float(untouched.std()) == pytest.approx(expected_std, rel=0.1)


def test_empty_poisson_batches_are_pure_noise_steps_and_runs_replay():
    # seeded noise: only then does the server's seed replay the client's noise (secure: tests/privacy)
    dp = LocalDPSGD(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.05, steps=5, noise_source="seeded")
    trainer, _, _ = _setup(dp)
    one = ClientData(tokens=torch.randint(1, 40, (1, 6)), labels=torch.tensor([2]))
    a = trainer.update(one, generator=torch.Generator().manual_seed(3))
    b = trainer.update(one, generator=torch.Generator().manual_seed(3))
    c = trainer.update(one, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.delta, b.delta) and not torch.equal(a.delta, c.delta)
    assert bool(torch.isfinite(a.delta).all())


def test_local_steps_are_epochs_over_the_sample_rate():
    assert local_steps(epochs=1, sample_rate=0.25) == 4 and local_steps(epochs=2, sample_rate=0.3) == 7


def test_server_accounts_for_the_client_with_the_most_rounds():
    dp = LocalDPSGD(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.5, steps=3)
    book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
    server = FederatedServer(
        params=torch.zeros(2),
        n_clients=5,
        cfg=FederationConfig(rounds=6, sample_rate=0.5, server_optimizer="fedavg"),  # a plain mean
        dp=None,
        book=book,
        seed=0,
        local_dp=dp,
        noise_source="seeded",  # replayable sampling: under secure sampling a client is in all 6 rounds 1 run in 13
    )
    counts, rounds_with_clients = np.zeros(5, dtype=int), 0
    while (plan := server.next_round()) is not None:
        counts[plan.clients] += 1
        rounds_with_clients += len(plan.clients) > 0
        assert plan.local_dp == dp and plan.clip_norm is None
        for _ in plan.clients:
            server.receive(Update(delta=torch.tensor([1.0, 0.0]), n_examples=7, loss=0.0))
        server.finish_round()
        assert book.steps == 3 * counts.max()
    assert 0 < counts.max() < 6  # sampling left some rounds out for every client: the claim is not all rounds
    # a plain mean, not weighted by example counts: each round with clients moved coordinate 0 by exactly 1
    assert float(server.params[0]) == pytest.approx(rounds_with_clients)
