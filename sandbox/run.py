"""One run: data → partition (consent) → train → account → record. The only orchestrator.

Everything here is side effects at the edge: it reads the corpus, calls the pure
stages, and writes ``record.json`` and ``model.pt`` into the run directory (Hydra's
output directory). Randomness comes from one seed, split into independent streams.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from sandbox.config import ConfigError, RunConfig
from sandbox.data import CanaryManifest, Corpus, generate_corpus, load_corpus
from sandbox.data.partition import split_users
from sandbox.privacy import PrivacyBook, check_delta, default_delta
from sandbox.record import SCHEMA_VERSION, privacy_section, versions, write_json, write_state_dict
from sandbox.tasks import emoji
from sandbox.train.central import DPSGDSettings, TensorRows, planned_steps, train_dpsgd, train_nonprivate


@dataclass(frozen=True)
class Seeds:
    """Independent streams derived from the run seed (NumPy SeedSequence spawning)."""

    split: np.random.Generator
    init: int
    batches: torch.Generator
    noise: torch.Generator

    @classmethod
    def from_seed(cls, seed: int) -> "Seeds":
        split, init, batches, noise = np.random.SeedSequence(seed).spawn(4)
        return cls(split=np.random.default_rng(split), init=int(init.generate_state(1)[0]),
                   batches=torch.Generator().manual_seed(int(batches.generate_state(1)[0])),
                   noise=torch.Generator().manual_seed(int(noise.generate_state(1)[0])))


def load_data(cfg: RunConfig) -> tuple[Corpus, CanaryManifest | None]:
    if cfg.data.source == "files":
        return load_corpus(Path(cfg.data.path)), None
    return generate_corpus(cfg.data.synthetic)


def resolve_delta(cfg: RunConfig, n_examples: int) -> float | None:
    """δ for a private run: the configured one (refused if ≥ 1/N) or the default below 1/N."""
    if cfg.privacy.mechanism == "none":
        return None
    if cfg.privacy.delta is None:
        return default_delta(n_examples)
    try:
        check_delta(delta=cfg.privacy.delta, n=n_examples, unit=cfg.privacy.unit)
    except ValueError as exc:
        raise ConfigError(f"privacy.delta: {exc}") from None
    return cfg.privacy.delta


class _Curve:
    """Learning curve: held-out-user metrics and ε spent, at each epoch boundary and at the end."""

    def __init__(self, model, test: emoji.EmojiExamples, *, k: int, every: int, book):
        self.model, self.test, self.k, self.every, self.book = model, test, k, every, book
        self.eval_model = copy.deepcopy(model)  # evaluate a copy: Opacus hooks live on the original
        self.points: list[dict] = []

    def __call__(self, step: int, total: int, loss: float) -> None:
        if step % self.every == 0 or step == total:
            self.eval_model.load_state_dict(self.model.state_dict())
            metrics = emoji.evaluate(self.eval_model, self.test, k=self.k)
            eps = self.book.epsilon() if self.book is not None and self.book.steps else None
            self.points.append({"step": step, "epsilon": eps, "train_loss": loss, **metrics})


def _progress_fns(*callbacks):
    def call(step, total, loss):
        for cb in callbacks:
            cb(step, total, loss)
    return call


def train(cfg: RunConfig, model, rows: TensorRows, *, book, seeds: Seeds, progress):
    """Non-private or DP-SGD training, as configured."""
    if cfg.privacy.mechanism == "none":
        return train_nonprivate(model, rows, cfg=cfg.train, generator=seeds.batches, progress=progress)
    dp = DPSGDSettings(clip_norm=cfg.privacy.clip_norm, delta=book.delta, accountant=book.accountant,
                       noise_multiplier=cfg.privacy.noise_multiplier,
                       target_epsilon=cfg.privacy.target_epsilon)
    return train_dpsgd(model, rows, cfg=cfg.train, dp=dp, book=book, generator=seeds.batches,
                       noise_generator=seeds.noise, progress=progress)


def _bar(enabled: bool):
    """A progress bar on stderr that stays quiet when stderr is not a terminal (logs, CI)."""
    console = Console(stderr=True)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total} steps  loss {task.fields[loss]:.3f}"),
                    TimeRemainingColumn(), console=console, transient=True,
                    disable=not (enabled and console.is_terminal))


def run(cfg: RunConfig, *, out_dir: Path, resolved_config: dict) -> dict:
    """Train once and write ``record.json`` + ``model.pt`` into ``out_dir``; returns the record."""
    started = time.perf_counter()
    seeds = Seeds.from_seed(cfg.seed)
    corpus, manifest = load_data(cfg)
    split = split_users(corpus, test_fraction=cfg.task.test_fraction, rng=seeds.split)
    classes = emoji.emoji_classes(corpus, users=np.concatenate([split.train_users, split.test_users]))
    train_ex = emoji.build_examples(corpus, users=split.train_users, classes=classes, config=cfg.task)
    test_ex = emoji.build_examples(corpus, users=split.test_users, classes=classes, config=cfg.task)
    if len(train_ex) == 0 or len(test_ex) == 0:
        raise ConfigError("data: no labelled messages among the training or held-out users")
    delta = resolve_delta(cfg, len(train_ex))
    book = None
    if cfg.privacy.mechanism != "none":
        book = PrivacyBook(unit="example", delta=delta, accountant=cfg.privacy.accountant)

    with torch.random.fork_rng():
        torch.manual_seed(seeds.init)
        model = emoji.EmojiModel(config=cfg.task, n_classes=len(classes))
    steps_per_epoch = planned_steps(n_examples=len(train_ex), batch_size=cfg.train.batch_size, epochs=1)[0]
    curve = _Curve(model, test_ex, k=cfg.task.top_k, every=steps_per_epoch, book=book)
    rows = TensorRows(train_ex.tokens, train_ex.labels)
    with _bar(cfg.progress) as bar:
        task_id = bar.add_task("training", total=None, loss=float("nan"))

        def show(step, total, loss):
            bar.update(task_id, completed=step, total=total, loss=loss)

        result = train(cfg, model, rows, book=book, seeds=seeds, progress=_progress_fns(curve, show))

    metrics = emoji.evaluate(result.model, test_ex, k=cfg.task.top_k)
    baseline = emoji.most_frequent_baseline(train_ex, test_ex, n_classes=len(classes), k=cfg.task.top_k)
    record = {
        "schema_version": SCHEMA_VERSION, "task": "emoji", "mode": "central", "engine": "central",
        "seed": cfg.seed, "status": "completed", "config": resolved_config, "versions": versions(),
        "data": _data_section(corpus, split, manifest, train_ex, test_ex, classes),
        "privacy": _privacy(cfg, result, book),
        "metrics": {**metrics, "baseline": baseline, "split": "held-out users"},
        "curve": curve.points,
        "timing": {"seconds": round(time.perf_counter() - started, 2)},
    }
    write_state_dict(out_dir / "model.pt", result.model.state_dict())
    if manifest is not None:  # for audits; training never reads it
        write_json(out_dir / "canaries.json", manifest.to_json())
    write_json(out_dir / "record.json", record)  # last: its presence means the run completed
    return record


def _data_section(corpus, split, manifest, train_ex, test_ex, classes) -> dict:
    return {
        "n_users": corpus.n_users, "n_workspaces": corpus.n_workspaces,
        "n_messages": corpus.n_messages, "n_examples": len(train_ex), "n_test_examples": len(test_ex),
        "n_train_users": len(split.train_users), "n_test_users": len(split.test_users),
        "n_opted_out_users": split.n_excluded_users,
        "n_opted_out_workspaces": int(corpus.workspace_opted_out.sum()),
        "n_canaries": len(manifest.inserted) if manifest else 0,
        "n_classes": len(classes), "fingerprint": corpus.fingerprint(),
    }


def _privacy(cfg: RunConfig, result, book) -> dict:
    if book is None:
        return privacy_section(mechanism="none", unit=cfg.privacy.unit, epsilon=None, delta=None,
                               accountant=None, noise_multiplier=None, sample_rate=None,
                               sampling=None, steps=result.steps, clip_norm=None,
                               target_epsilon=None, events=None)
    return privacy_section(
        mechanism="dpsgd", unit=book.unit, epsilon=book.epsilon(), delta=book.delta,
        accountant=book.accountant, noise_multiplier=result.noise_multiplier,
        sample_rate=result.sample_rate, sampling="poisson", steps=book.steps,
        clip_norm=cfg.privacy.clip_norm, target_epsilon=cfg.privacy.target_epsilon,
        events=[asdict(e) for e in book.events])
