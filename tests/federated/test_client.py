"""The client's local update: plain local SGD from the global parameters, optional client-side clipping."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from sandbox.federated.client import ClientData, LocalConfig, LocalTrainer, local_update
from sandbox.tasks import emoji

CFG = emoji.EmojiTaskConfig(n_buckets=128, max_tokens=6, embedding_dim=8, hidden_dim=8)


def _setup():
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=CFG, n_classes=5)
    params = parameters_to_vector(model.parameters()).detach().clone()
    data = ClientData(tokens=torch.randint(1, 128, (6, 6)), labels=torch.randint(0, 5, (6,)))
    return model, params, data


def test_one_local_step_is_minus_lr_times_the_gradient_and_params_are_untouched():
    model, params, data = _setup()
    reference = emoji.EmojiModel(config=CFG, n_classes=5)
    torch.nn.utils.vector_to_parameters(params.clone(), reference.parameters())
    nn.functional.cross_entropy(reference(data.tokens), data.labels).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    before = params.clone()
    update = local_update(
        params, data, model=model, cfg=LocalConfig(batch_size=16, lr=0.3), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(update.delta.to_dense(), -0.3 * grad, atol=1e-6, rtol=1e-5)
    assert torch.equal(params, before)  # the global parameters are never modified
    assert update.n_examples == 6 and update.unclipped


def test_client_side_clipping_bounds_the_update_and_reports_the_bit():
    model, params, data = _setup()
    free = local_update(params, data, model=model, cfg=LocalConfig(lr=5.0), generator=torch.Generator().manual_seed(0))
    norm = float(free.delta.to_dense().norm())
    clipped = local_update(
        params,
        data,
        model=model,
        cfg=LocalConfig(lr=5.0),
        generator=torch.Generator().manual_seed(0),
        clip_norm=norm / 2,
    )
    assert float(clipped.delta.to_dense().norm()) <= norm / 2 * (1 + 1e-5) and not clipped.unclipped
    torch.testing.assert_close(clipped.delta.to_dense(), free.delta.to_dense() / 2)


def _dense_local_sgd(params, data, cfg, seed):
    """Reference: plain dense local SGD on a full model copy (torch.optim.SGD, dense gradients)."""
    model = emoji.EmojiModel(config=CFG, n_classes=5)
    torch.nn.utils.vector_to_parameters(params.clone(), model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        for batch in torch.randperm(len(data), generator=generator).split(cfg.batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(data.tokens[batch]), data.labels[batch]).backward()
            optimizer.step()
    return parameters_to_vector(model.parameters()).detach() - params


def test_sparse_local_sgd_equals_dense_sgd_over_several_steps_and_clients():
    model, params, _ = _setup()
    cfg = LocalConfig(epochs=2, batch_size=4, lr=0.5)
    trainer = LocalTrainer(model, cfg)
    trainer.load(params)
    for client in range(3):  # one trainer, client after client: each starts from the global params
        g = torch.Generator().manual_seed(100 + client)
        data = ClientData(
            tokens=torch.randint(0, 40, (11, 6), generator=g), labels=torch.randint(0, 5, (11,), generator=g)
        )
        update = trainer.update(data, generator=torch.Generator().manual_seed(client))
        reference = _dense_local_sgd(params, data, cfg, seed=client)
        torch.testing.assert_close(update.delta.to_dense(), reference, atol=1e-6, rtol=1e-5)
        # only embedding rows of the client's tokens (ids < 40) and the dense layers may change
        embedding_size = 128 * 8
        touched_rows = torch.unique(update.delta.index[update.delta.index < embedding_size] // 8)
        assert set(touched_rows.tolist()) == set(torch.unique(data.tokens).tolist())
        assert int((update.delta.index >= embedding_size).sum()) == params.numel() - embedding_size
        assert torch.equal(reference[:embedding_size].reshape(128, 8)[40:], torch.zeros(88, 8))
