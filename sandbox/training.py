"""The one training entry: a config and prepared data in, a trained model (``Outcome``) out.

``train_model`` is what runs, shadow models and positive controls share: central training
(non-private, or example-level DP-SGD with Opacus) or federated training (``sandbox.federated``),
as configured. It writes nothing; ``sandbox.run`` records what it returns.
"""

from __future__ import annotations

import copy

from sandbox.config import ConfigError, RunConfig
from sandbox.federated.trainer import train_federated
from sandbox.prepare import Prepared, Seeds, resolve_delta
from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import batches_per_epoch, plan_for
from sandbox.privacy.section import privacy_section
from sandbox.record import Outcome
from sandbox.tasks.base import Examples
from sandbox.train.central import DPSGDSettings, TensorRows, train_dpsgd, train_nonprivate
from sandbox.train.progress import progress_bar
from sandbox.train.threads import single_threaded


class _Curve:
    """Learning curve: held-out-user metrics and ε spent, at each epoch boundary and at the end."""

    def __init__(self, model, test: Examples, *, task, every: int, book):
        self.model, self.test, self.task, self.every, self.book = model, test, task, every, book
        self.eval_model = copy.deepcopy(model)  # evaluate a copy: Opacus hooks live on the original
        self.points: list[dict] = []

    def __call__(self, step: int, total: int, loss: float) -> None:
        if step % self.every == 0 or step == total:
            self.eval_model.load_state_dict(self.model.state_dict())
            metrics = self.task.evaluate(self.eval_model, self.test)
            eps = self.book.epsilon() if self.book is not None and self.book.steps else None
            self.points.append({"step": step, "epsilon": eps, "train_loss": loss, **metrics})


def train_central(cfg: RunConfig, data: Prepared, seeds: Seeds) -> Outcome:
    """Non-private training or example-level DP-SGD on the pooled training users' messages."""
    model = data.new_model(cfg, seeds)
    book = None
    if cfg.privacy.mechanism == "dpsgd":
        delta = resolve_delta(cfg, n=len(data.train), unit="example")
        book = PrivacyBook(unit="example", delta=delta, accountant=cfg.privacy.accountant)
    per_epoch = batches_per_epoch(n_examples=len(data.train), batch_size=cfg.train.batch_size)
    curve = _Curve(model, data.test, task=cfg.task, every=per_epoch, book=book)
    rows = TensorRows(data.train.tokens, data.train.labels)
    with progress_bar(cfg.progress, unit="steps") as show:

        def progress(step, total, loss):
            curve(step, total, loss)
            show(step, total, loss)

        if book is None:
            result = train_nonprivate(model, rows, cfg=cfg.train, generator=seeds.batches, progress=progress)
        else:
            dp = DPSGDSettings(clip_norm=cfg.privacy.clip_norm, plan=plan_for(cfg, n_examples=len(data.train)))
            result = train_dpsgd(
                model,
                rows,
                cfg=cfg.train,
                dp=dp,
                book=book,
                generator=seeds.dp_batches(cfg.privacy.noise_source),
                noise_generator=seeds.noise_generator(cfg.privacy.noise_source),
                progress=progress,
            )
    if book is None:
        privacy = privacy_section(mechanism="none", unit="example", book=None, steps=result.steps)
    else:
        privacy = privacy_section(
            mechanism="dpsgd",
            unit="example",
            book=book,
            steps=result.steps,
            noise_multiplier=result.noise_multiplier,
            sample_rate=result.sample_rate,
            clip_norm=cfg.privacy.clip_norm,
            target_epsilon=cfg.privacy.target_epsilon,
            noise_source=cfg.privacy.noise_source,
            per_example_norms=result.per_example_norms,
        )
    return Outcome(
        model=result.model,
        curve=curve.points,
        privacy=privacy,
        status="completed",
        engine="central",
        trained_users=data.split.train_users,
    )


def train_model(cfg: RunConfig, data: Prepared, seeds: Seeds, *, grid=None) -> Outcome:
    """Central or federated training as configured: the one harness runs, shadows and controls share."""
    if cfg.mode == "federated":
        return train_federated(cfg, data, seeds, grid=grid)
    with single_threaded():  # bit-identical replays (see sandbox.train.threads)
        return train_central(cfg, data, seeds)


def check_finite(model, cfg: RunConfig) -> None:
    """A diverged model (inf/NaN parameters) is not a result: stop with the keys that usually cause it."""
    bad = [name for name, p in model.named_parameters() if not bool(p.detach().isfinite().all())]
    if bad:
        keys = (
            "federation.local_lr, federation.server_lr, federation.local_epochs"
            if cfg.mode == "federated"
            else "train.lr"
        )
        raise ConfigError(f"training diverged: non-finite parameters in {', '.join(bad)}; lower {keys}")
