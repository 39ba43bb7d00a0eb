"""The stages every trainer shares: seeds, data, consent-aware split, featurised examples, δ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sandbox.config import ConfigError, RunConfig
from sandbox.data import CanaryManifest, Corpus, generate_corpus, load_corpus
from sandbox.data.partition import UserSplit, split_users
from sandbox.data.synthetic import draw_seeking
from sandbox.privacy import check_delta, default_delta
from sandbox.privacy.noise import noise_generator, sampling_generator
from sandbox.tasks import emoji
from sandbox.tasks.recommend import TASKS as RECOMMEND_TASKS, RecCorpus, RecData, RecExamples, Split
from sandbox.tasks.recommend import channels_data, jobs_data


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
    def from_seed(cls, seed: int) -> "Seeds":
        split, init, batches, noise, federation = np.random.SeedSequence(seed).spawn(5)
        return cls(split=np.random.default_rng(split), init=int(init.generate_state(1)[0]),
                   batches=torch.Generator().manual_seed(int(batches.generate_state(1)[0])),
                   noise_seed=int(noise.generate_state(1)[0]),
                   federation=int(federation.generate_state(1)[0]))

    def noise_generator(self, source: str) -> torch.Generator:
        """Central DP-SGD's noise: from the OS CSPRNG (``secure``) or replayed from the run seed (``seeded``)."""
        return noise_generator(source, seeded_from=self.noise_seed)

    def dp_batches(self, source: str) -> torch.Generator:
        """Central DP-SGD's Poisson batch sampling: secret (``secure``) or the run's ``batches`` stream."""
        return sampling_generator(source, self.batches)


@dataclass(frozen=True)
class Prepared:
    """A run's data. For task=jobs|channels: ``rec`` holds the interactions, ``classes`` are the
    items, ``train`` the training users' history rows and ``test`` the held-out users' held-out rows."""

    corpus: Corpus | RecCorpus
    manifest: CanaryManifest | None
    split: UserSplit | Split
    classes: tuple[str, ...]
    train: emoji.EmojiExamples | RecExamples
    test: emoji.EmojiExamples | RecExamples
    rec: RecData | None = None

    def new_model(self, cfg: RunConfig, seeds: Seeds) -> emoji.EmojiModel:
        """The initial model, from the run's init seed (global torch RNG forked, then restored).

        For recommendation the same network is the two-tower model: hashed user words →
        pooled user vector → MLP → one logit per item (the item embeddings)."""
        with torch.random.fork_rng():
            torch.manual_seed(seeds.init)
            return emoji.EmojiModel(config=cfg.task, n_classes=len(self.classes))


def load_data(cfg: RunConfig) -> tuple[Corpus, CanaryManifest | None]:
    if cfg.data.source == "files":
        return load_corpus(Path(cfg.data.path)), None
    try:
        return generate_corpus(cfg.data.synthetic)
    except ValueError as exc:  # SyntheticConfig names the field it refuses
        raise ConfigError(f"data: {exc}".replace("data: SyntheticConfig.", "data.")) from None


def prepare(cfg: RunConfig, seeds: Seeds) -> Prepared:
    if cfg.task.name in RECOMMEND_TASKS:
        return _prepare_recommend(cfg, seeds)
    corpus, manifest = load_data(cfg)
    split = split_users(corpus, test_fraction=cfg.task.test_fraction, rng=seeds.split)
    classes = emoji.emoji_classes(corpus, users=np.concatenate([split.train_users, split.test_users]))
    train = emoji.build_examples(corpus, users=split.train_users, classes=classes, config=cfg.task)
    test = emoji.build_examples(corpus, users=split.test_users, classes=classes, config=cfg.task)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError("data: no labelled messages among the training or held-out users")
    return Prepared(corpus=corpus, manifest=manifest, split=split, classes=classes, train=train, test=test)


def _prepare_recommend(cfg: RunConfig, seeds: Seeds) -> Prepared:
    try:
        if cfg.task.name == "jobs":
            rec = jobs_data(cfg.task, seeds.split)
        else:
            synthetic = cfg.data.synthetic if cfg.data.source == "synthetic" else None
            seeking = draw_seeking(synthetic) if synthetic is not None and synthetic.seeking_rate > 0 else None
            rec = channels_data(cfg.task, load_data(cfg)[0], seeds.split, sensitive=seeking)
    except ValueError as exc:  # JobsConfig / CorpusError / a split too small: say where
        raise ConfigError(f"task={cfg.task.name}: {exc}".replace("JobsConfig.", "task.jobs.")) from None
    train = rec.examples(rec.split.train_users, held_out=False)
    test = rec.examples(rec.split.test_users, held_out=True)
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"task={cfg.task.name}: no interactions among the training users or none held out "
                          "among the held-out users (task.holdout_fraction)")
    return Prepared(corpus=rec.corpus, manifest=None, split=rec.split, classes=rec.corpus.item_names,
                    train=train, test=test, rec=rec)


def resolve_delta(cfg: RunConfig, *, n: int, unit: str) -> float:
    """δ for a private run over ``n`` units: the configured one (refused if ≥ 1/n) or the default below 1/n."""
    if cfg.privacy.delta is None:
        return default_delta(n)
    try:
        check_delta(delta=cfg.privacy.delta, n=n, unit=unit)
    except ValueError as exc:
        raise ConfigError(f"privacy.delta: {exc}") from None
    return cfg.privacy.delta
