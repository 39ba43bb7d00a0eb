"""The client's local update: plain local SGD from the global parameters, optional client-side clipping."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from sandbox.federated.client import ClientData, LocalConfig, local_update
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
    update = local_update(params, data, model=model, cfg=LocalConfig(batch_size=16, lr=0.3),
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(update.delta, -0.3 * grad, atol=1e-6, rtol=1e-5)
    assert torch.equal(params, before)  # the global parameters are never modified
    assert update.n_examples == 6 and update.unclipped


def test_client_side_clipping_bounds_the_update_and_reports_the_bit():
    model, params, data = _setup()
    free = local_update(params, data, model=model, cfg=LocalConfig(lr=5.0), generator=torch.Generator().manual_seed(0))
    norm = float(free.delta.norm())
    clipped = local_update(params, data, model=model, cfg=LocalConfig(lr=5.0),
                           generator=torch.Generator().manual_seed(0), clip_norm=norm / 2)
    assert float(clipped.delta.norm()) <= norm / 2 * (1 + 1e-5) and not clipped.unclipped
    torch.testing.assert_close(clipped.delta, free.delta / 2)
