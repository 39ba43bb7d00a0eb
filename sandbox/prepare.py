"""The stages every trainer shares: seeds, data, consent-aware split, featurised examples, δ."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from sandbox.config import ConfigError, RunConfig
from sandbox.privacy import check_delta, default_delta
from sandbox.privacy.noise import noise_generator, sampling_generator
from sandbox.tasks.base import Task, TaskData


@dataclass(frozen=True)
class Seeds:
    """Independent streams derived from the run seed (NumPy SeedSequence spawning).

    ``noise_seed`` seeds central DP-SGD's noise only under ``privacy.noise_source=seeded``;
    the default, ``secure``, ignores it (``noise_generator`` below, ``sandbox.privacy.noise``).
    """

    split: np.random.Generator
    init: int
    batches: torch.Generator
    noise_seed: int
    federation: int  # the federated server's own seed (sampling, client seeds; its noise only when seeded)

    @classmethod
    def from_seed(cls, seed: int) -> Seeds:
        split, init, batches, noise, federation = np.random.SeedSequence(seed).spawn(5)
        return cls(
            split=np.random.default_rng(split),
            init=int(init.generate_state(1)[0]),
            batches=torch.Generator().manual_seed(int(batches.generate_state(1)[0])),
            noise_seed=int(noise.generate_state(1)[0]),
            federation=int(federation.generate_state(1)[0]),
        )

    def noise_generator(self, source: str) -> torch.Generator:
        """Central DP-SGD's noise: from the OS CSPRNG (``secure``) or replayed from the run seed (``seeded``)."""
        return noise_generator(source, seeded_from=self.noise_seed)

    def dp_batches(self, source: str) -> torch.Generator:
        """Central DP-SGD's Poisson batch sampling: secret (``secure``) or the run's ``batches`` stream."""
        return sampling_generator(source, self.batches)


@dataclass(frozen=True)
class Prepared(TaskData):
    """A run's data, as its task prepared it (``Task.prepare``), and the run's initial model.

    For recommenders (task=jobs|channels) ``extra`` holds the interactions, ``classes`` are the
    items, ``train`` the training users' history rows and ``test`` the held-out users' held-out rows."""

    task: Task | None = None

    def new_model(self, cfg: RunConfig, seeds: Seeds) -> nn.Module:
        """The initial model, from the run's init seed (global torch RNG forked, then restored)."""
        with torch.random.fork_rng():
            torch.manual_seed(seeds.init)
            return cfg.task.build_model(n_classes=len(self.classes))


def prepare(cfg: RunConfig, seeds: Seeds) -> Prepared:
    """The task's data for this run: corpus, consent-aware split, label space, examples (``Task.prepare``)."""
    if not isinstance(cfg.task, Task):
        missing = [
            name
            for name in (
                "name",
                "top_k",
                "attacks",
                "check",
                "prepare",
                "build_model",
                "evaluate",
                "baseline",
                "extra_metrics",
                "featurize",
                "canary_label",
            )
            if not hasattr(cfg.task, name)
        ]
        raise ConfigError(
            f"task._target_: {type(cfg.task).__qualname__} does not implement sandbox.tasks.base.Task "
            f"(missing: {', '.join(missing)})"
        )
    data = cfg.task.prepare(cfg.data, seeds.split)
    return Prepared(**{f.name: getattr(data, f.name) for f in fields(TaskData)}, task=cfg.task)


def resolve_delta(cfg: RunConfig, *, n: int, unit: str) -> float:
    """δ for a private run over ``n`` units: the configured one (refused if ≥ 1/n) or the default below 1/n."""
    if cfg.privacy.delta is None:
        return default_delta(n)
    try:
        check_delta(delta=cfg.privacy.delta, n=n, unit=unit)
    except ValueError as exc:
        raise ConfigError(f"privacy.delta: {exc}") from None
    return cfg.privacy.delta
