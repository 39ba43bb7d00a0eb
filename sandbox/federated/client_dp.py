"""Client-level DP-SGD: example-level DP-SGD (Opacus) inside each client, as an alternative to DP-FedAvg.

Each sampled client runs ``steps`` DP-SGD steps on its own messages: Poisson sampling of its
examples at rate q (Opacus' ``DPDataLoader``), per-example clipping to C by ghost clipping
and Gaussian noise σ·C on every coordinate (Opacus' ``DPOptimizerFastGradientClipping``),
divided by the expected batch q·n (a fixed denominator). The update is dense: noise lands on
every parameter, so which embedding rows a client touched is not revealed.

What it protects is one *example* (a message) of a client, not a user. Examples of different
clients are disjoint, so every example's privacy is the DP-SGD composition of the client that
holds it: (q, σ) for ``steps`` steps per round it took part in. Client sampling amplification
is not claimed; the run reports the ε of the client that took part in the most rounds.

Where the client's randomness comes from. The server sends each client a seed per round; it
drives the client's Poisson sampling of its examples (data-independent, replayable). The
noise does not come from it under ``privacy.noise_source=secure`` (the default): the client
draws a fresh generator state from its own OS CSPRNG for every update, and that state never
leaves the client (``sandbox.privacy.noise``). Only under ``seeded`` (research mode) is the
noise derived from the server's seed, so the server (and anyone with the record) can
regenerate and subtract it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus.data_loader import DPDataLoader
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn

from sandbox.federated.aggregate import Update
from sandbox.federated.client import ClientData, LocalConfig, LocalTrainer, ScratchParams
from sandbox.privacy.noise import noise_generator, sampling_generator
from sandbox.privacy.plan import local_steps as planned_local_steps
from sandbox.train.central import TensorRows, _as_batch


@dataclass(frozen=True)
class LocalDPSGD:
    """Client-level DP-SGD settings, the same for every client and round (sent with the round plan)."""

    noise_multiplier: float
    clip_norm: float
    sample_rate: float  # q: each of a client's examples joins each local step with probability q
    steps: int  # local DP-SGD steps per round
    noise_source: str = "secure"  # secure: the client's own OS CSPRNG | seeded: from the server's seed


def local_steps(*, epochs: int, sample_rate: float) -> int:
    """Local steps per round: ``epochs`` expected passes over the client's data at rate q (the rule is
    ``sandbox.privacy.plan.local_steps``, which the run's plan uses)."""
    return planned_local_steps(epochs=epochs, sample_rate=sample_rate)


class PrivateLocalTrainer(ScratchParams):
    """Opacus DP-SGD on one client after another, on one scratch model (wrapped once)."""

    def __init__(self, model: nn.Module, cfg: LocalConfig, dp: LocalDPSGD):
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                m.sparse = False  # Opacus needs dense gradients; the noise is dense anyway
        super().__init__(model)
        self.cfg, self.dp = cfg, dp
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            self.gsm = GradSampleModuleFastGradientClipping(
                model, batch_first=True, loss_reduction="mean", max_grad_norm=dp.clip_norm
            )
            self.optimizer = DPOptimizerFastGradientClipping(
                torch.optim.SGD(model.parameters(), lr=cfg.lr),
                noise_multiplier=dp.noise_multiplier,
                max_grad_norm=dp.clip_norm,
                expected_batch_size=1,
                loss_reduction="mean",
            )
        self.criterion = DPLossFastGradientClipping(
            self.gsm, self.optimizer, nn.CrossEntropyLoss(), loss_reduction="mean"
        )

    def update(self, data: ClientData, *, generator: torch.Generator, clip_norm: float | None = None) -> Update:
        """``dp.steps`` DP-SGD steps from the loaded parameters; the dense delta (new − old).

        Under ``dp.noise_source="secure"`` both the Poisson sampling of the client's examples and
        the noise come from fresh secret generators drawn here; in research mode (``"seeded"``) both
        replay from two streams derived from ``generator`` (seeded by the server).
        ``clip_norm`` must be None: clipping here is per example, inside DP-SGD.
        """
        if clip_norm is not None:
            raise ValueError("client-level DP-SGD clips per example; the update itself is not clipped")
        if self._work is None:
            raise RuntimeError("PrivateLocalTrainer.update before load(params)")
        self._work.copy_(self._global)  # the previous client's noise touched every coordinate
        sampling_seed, noise_seed = np.random.SeedSequence(
            int(torch.randint(2**62, (1,), generator=generator))
        ).generate_state(2, dtype=np.uint64)
        # the example sampling is part of the mechanism: secret (drawn here, on the client) under secure noise
        sampling = sampling_generator(self.dp.noise_source, torch.Generator().manual_seed(int(sampling_seed)))
        loader = DPDataLoader(
            TensorRows(data.tokens, data.labels),
            sample_rate=self.dp.sample_rate,
            collate_fn=_as_batch,
            generator=sampling,
        )
        self.optimizer.generator = noise_generator(self.dp.noise_source, seeded_from=int(noise_seed))
        self.optimizer.expected_batch_size = self.dp.sample_rate * len(data)  # fixed denominator q·n
        self.gsm.train()
        losses, done = [], 0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            while done < self.dp.steps:
                for tokens, labels in loader:
                    self.optimizer.zero_grad(set_to_none=True)
                    if len(labels):
                        logits = self.gsm(tokens)
                        self.criterion(logits, labels).backward()  # ghost clipping: clipped sum in .grad
                        losses.append(float(nn.functional.cross_entropy(logits.detach(), labels)))
                    else:  # an empty Poisson batch (Opacus' ghost clipping cannot take one): the sum is
                        for p in self.model.parameters():  # zero and the step is pure noise, as DP-SGD requires
                            p.grad = torch.zeros_like(p)
                    self.optimizer.step()
                    done += 1
                    if done == self.dp.steps:
                        break
        with torch.no_grad():
            delta = self._work - self._global
        return Update(delta=delta, n_examples=len(data), loss=sum(losses) / max(1, len(losses)))


def make_trainer(model: nn.Module, cfg: LocalConfig, local_dp: LocalDPSGD | None):
    """The client trainer every engine uses: plain local SGD (sparse updates) or client-level DP-SGD."""
    return LocalTrainer(model, cfg) if local_dp is None else PrivateLocalTrainer(model, cfg, local_dp)
