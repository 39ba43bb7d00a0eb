"""Central training: plain SGD-family training, or example-level DP-SGD with Opacus.

DP-SGD uses Opacus' Poisson-sampling data loader (each example joins each batch
independently with probability q, which is what the subsampled-Gaussian accountants
assume), per-example clipping by ghost clipping, and Gaussian noise σ·C on the summed
clipped gradients. Every optimizer step that actually ran is recorded in a ``PrivacyBook``
by a hook on Opacus' optimizer; ε is computed from that record, nowhere else.

The noise comes from the ``noise_generator`` the caller passes (``sandbox.privacy.noise``:
a secret OS-CSPRNG state by default, or replayed from the run seed under
``privacy.noise_source=seeded``); the Poisson sampling from ``generator`` (seeded).

What DP-SGD runs is decided before it starts, by the run's ``PrivacyPlan``
(``sandbox.privacy.plan``): σ, q = 1/⌈N/B⌉ and the steps. The trainer executes that plan and
checks that Opacus' loader samples at the plan's q; it never calibrates σ itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.data_loader import DPDataLoader
from opacus.optimizers.optimizer import _generate_noise
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sandbox.config.schema import TrainConfig
from sandbox.privacy import PrivacyBook
from sandbox.privacy.accountants import registry_name
from sandbox.privacy.plan import PrivacyPlan, epoch_steps
from sandbox.train.fastdp import clipped_gradient_sum, supports_fast_clipping

ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, loss)


@dataclass(frozen=True)
class DPSGDSettings:
    """What DP-SGD needs: the clip norm C and the run's plan (``sandbox.privacy.plan.plan_dpsgd`` / ``plan_for``)."""

    clip_norm: float
    plan: PrivacyPlan


@dataclass(frozen=True)
class TrainResult:
    model: nn.Module  # the plain module (no Opacus wrapper), trained
    steps: int  # optimizer steps that ran
    book: PrivacyBook | None  # None when not private
    sample_rate: float | None
    noise_multiplier: float | None
    per_example_norms: str | None = None  # DP-SGD: "hashed_bag" (sandbox.train.fastdp) | "opacus_ghost"


class TensorRows(Dataset):
    """Rows of equally long tensors; ``__getitems__`` returns a whole batch at once (no per-row collate)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def _as_batch(batch):
    return batch


def make_loader(dataset: TensorRows, *, batch_size: int, generator: torch.Generator) -> DataLoader:
    """Shuffled batches; under DP Opacus replaces the sampler with Poisson sampling at q = 1/len(loader)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=_as_batch)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


def _run_steps(loader: DataLoader, *, steps: int, step_fn: Callable, progress: ProgressFn | None) -> int:
    done = 0
    while done < steps:
        for tokens, labels in loader:
            loss = step_fn(tokens, labels)
            done += 1
            if progress:
                progress(done, steps, loss)
            if done == steps:
                break
    return done


def train_nonprivate(
    model: nn.Module,
    data: TensorRows,
    *,
    cfg: TrainConfig,
    generator: torch.Generator,
    progress: ProgressFn | None = None,
) -> TrainResult:
    optimizer = _optimizer(model, cfg)
    criterion = nn.CrossEntropyLoss()
    loader = make_loader(data, batch_size=cfg.batch_size, generator=generator)
    steps = epoch_steps(n_examples=len(data), batch_size=cfg.batch_size, epochs=cfg.epochs)

    def step(tokens, labels):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(tokens), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    ran = _run_steps(loader, steps=steps, step_fn=step, progress=progress)
    return TrainResult(model=model, steps=ran, book=None, sample_rate=None, noise_multiplier=None)


def train_dpsgd(
    model: nn.Module,
    data: TensorRows,
    *,
    cfg: TrainConfig,
    dp: DPSGDSettings,
    book: PrivacyBook,
    generator: torch.Generator,
    noise_generator: torch.Generator,
    progress: ProgressFn | None = None,
    opacus_ghost: bool = False,
) -> TrainResult:
    """Example-level DP-SGD executing ``dp.plan``: σ, Poisson rate q = 1/⌈N/B⌉ and the plan's steps.

    The plan must be a ``dpsgd`` plan for ``data`` (its N) and ``cfg.batch_size``. Each step that runs
    is recorded in ``book`` (which must be empty and match the plan's unit, δ and accountant). The
    noise is drawn from ``noise_generator`` (``sandbox.privacy.noise.noise_generator``), the Poisson
    sampling from ``generator``.
    """
    plan = dp.plan
    if plan.mechanism != "dpsgd" or plan.n_examples != len(data) or plan.batch_size != cfg.batch_size:
        raise ValueError(
            f"train_dpsgd needs a dpsgd plan for these {len(data)} examples at batch size "
            f"{cfg.batch_size}; got a {plan.mechanism} plan (N={plan.n_examples}, B={plan.batch_size})"
        )
    if book.steps or (book.unit, book.delta, book.accountant) != (plan.unit, plan.delta, plan.accountant):
        raise ValueError("train_dpsgd needs a fresh PrivacyBook with the plan's unit, delta and accountant")
    steps, q, sigma = plan.steps, plan.sample_rate, plan.noise_multiplier
    if supports_fast_clipping(model) and not opacus_ghost:  # opacus_ghost: Opacus' path for every model
        return _train_dpsgd_fast(
            model,
            data,
            cfg=cfg,
            dp=dp,
            book=book,
            generator=generator,
            noise_generator=noise_generator,
            progress=progress,
        )
    with warnings.catch_warnings():  # Opacus' secure_mode needs torchcsprng; the noise generator is ours
        warnings.filterwarnings("ignore", message="Secure RNG turned off")  # (sandbox.privacy.noise)
        engine = PrivacyEngine(accountant=plan.accountant)
    gsm, optimizer, criterion, loader = engine.make_private(
        module=model,
        optimizer=_optimizer(model, cfg),
        criterion=nn.CrossEntropyLoss(),
        data_loader=make_loader(data, batch_size=cfg.batch_size, generator=generator),
        noise_multiplier=sigma,
        max_grad_norm=dp.clip_norm,
        poisson_sampling=True,
        grad_sample_mode="ghost",
        noise_generator=noise_generator,
    )
    if loader.sample_rate != q:  # Opacus samples at 1/len(loader): the plan must have the same q
        raise RuntimeError(f"Opacus' Poisson loader samples at q={loader.sample_rate}, the plan at q={q}")
    _chain_step_hook(optimizer, book, sample_rate=q)

    def step(tokens, labels):
        gsm.train()
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(gsm(tokens), labels)
        loss.backward()  # ghost clipping: per-example norms, clipped, in two passes
        optimizer.step()  # noise σ·C added; the hook records the step
        return float(loss.detach())

    with warnings.catch_warnings():  # Opacus' ghost clipping triggers this torch warning every step
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        ran = _run_steps(loader, steps=steps, step_fn=step, progress=progress)
    _check_against_opacus(book, engine)
    return TrainResult(
        model=gsm._module,
        steps=ran,
        book=book,
        sample_rate=q,
        noise_multiplier=sigma,
        per_example_norms="opacus_ghost",
    )


def _train_dpsgd_fast(model, data, *, cfg, dp, book, generator, noise_generator, progress) -> TrainResult:
    """DP-SGD for ``HashedBagModel`` with per-example norms from ``sandbox.train.fastdp``.

    Everything else is Opacus': its Poisson loader over the same shuffled loader (q = 1/len(loader)),
    its noise function (σ·C per coordinate, from ``noise_generator``, parameter by parameter as its
    optimizer draws it), the division by the expected batch size int(N·q), and an Opacus accountant
    stepped beside the ``PrivacyBook`` and checked against it. With the same generators it trains the
    same model as the Opacus ghost-clipping path (tests/train/test_fastdp.py).
    """
    plan = dp.plan
    steps, q, sigma = plan.steps, plan.sample_rate, plan.noise_multiplier
    loader = DPDataLoader.from_data_loader(make_loader(data, batch_size=cfg.batch_size, generator=generator))
    if loader.sample_rate != q:
        raise RuntimeError(f"Opacus' Poisson loader samples at q={loader.sample_rate}, the plan at q={q}")
    optimizer = _optimizer(model, cfg)
    accountant = create_accountant(mechanism=registry_name(plan.accountant))
    expected_batch_size = int(len(data) * q)
    params = list(model.parameters())
    std = sigma * dp.clip_norm

    def step(tokens, labels):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        # the noise first (Opacus' draws, parameter by parameter), then the clipped sums added into it
        noise = tuple(_generate_noise(std=std, reference=p, generator=noise_generator) for p in params)
        clipped = clipped_gradient_sum(model, tokens, labels, clip_norm=dp.clip_norm, into=noise)
        for p, noisy_sum in zip(params, clipped.grads):
            p.grad = noisy_sum.div_(expected_batch_size)
        optimizer.step()
        accountant.step(noise_multiplier=sigma, sample_rate=q)
        book.record(noise_multiplier=sigma, sample_rate=q)
        return float(clipped.loss.mean()) if len(labels) else float("nan")

    ran = _run_steps(loader, steps=steps, step_fn=step, progress=progress)
    _check_against_opacus(book, accountant)
    return TrainResult(
        model=model, steps=ran, book=book, sample_rate=q, noise_multiplier=sigma, per_example_norms="hashed_bag"
    )


def _chain_step_hook(optimizer, book: PrivacyBook, *, sample_rate: float) -> None:
    """Record each step that Opacus' optimizer really took (skipped steps call no hook)."""
    opacus_hook = optimizer.step_hook

    def hook(opt):
        opacus_hook(opt)
        book.record(noise_multiplier=opt.noise_multiplier, sample_rate=sample_rate * opt.accumulated_iterations)

    optimizer.attach_step_hook(hook)


def _check_against_opacus(book: PrivacyBook, engine) -> None:
    """Our record and Opacus' own accountant history (a PrivacyEngine's or an accountant) must describe the same steps."""
    ours = [(e.noise_multiplier, e.sample_rate, e.steps) for e in book.events]
    theirs = getattr(engine, "accountant", engine).history
    if sum(s for *_, s in theirs) != book.steps or {h[:2] for h in theirs} != {o[:2] for o in ours}:
        raise RuntimeError(f"privacy record {ours} disagrees with Opacus' accountant {theirs}")
