"""Shadow (reference) models for LiRA and RMIA, trained by the run's own harness on random halves.

Shadow i trains with the run's config (central or federated, DP or not, same trainer
functions) on the users flagged in row i of a keep mask over the audit population. The mask
follows LiRA's reference code: every user is IN for exactly half of the shadows, so each
target has N/2 IN and N/2 OUT models. A shadow's membership is what really ran: a user kept
but never sampled by federated training counts as OUT.

Each shadow resolves its own σ (for a target ε) and δ from its own population, so its
``privacy`` section (``ShadowSet.privacy``) is what the ledger charges it with.

Shadows are independent, so they train in worker processes (``audit.workers``), each
single-threaded; results come back in shadow order and are identical for any worker count.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sandbox.audit.targets import Population, UnitStats, trained_user_mask, unit_stats
from sandbox.config import ConfigError, RunConfig
from sandbox.prepare import Prepared, Seeds
from sandbox.train.threads import single_threaded
from sandbox.training import check_finite, train_model


@dataclass(frozen=True)
class ShadowSet:
    """Statistics of every population unit under each shadow, and who really trained it."""

    confidence: np.ndarray  # [N, n_units]
    probability: np.ndarray  # [N, n_units]
    keep: np.ndarray  # [N, n_units] bool: the unit's data took part in shadow i's training
    seconds: float  # wall time of training and scoring all shadows
    privacy: tuple = ()  # shadow i's own record ``privacy`` section (its σ and δ, from its own population)


def keep_mask(n_shadows: int, n_users: int, rng: np.random.Generator) -> np.ndarray:
    """[N, n_users] bool with exactly N/2 True per column (LiRA's ``argsort(0) < N/2``)."""
    if n_shadows < 2 or n_shadows % 2:
        raise ValueError(f"audit.shadows must be an even number ≥ 2, got {n_shadows}")
    return rng.uniform(size=(n_shadows, n_users)).argsort(axis=0) < n_shadows // 2


def shadow_seed(run_seed: int, index: int) -> int:
    """Shadow i's seed: its own stream, independent of the run's and of other shadows'."""
    return int(np.random.SeedSequence([run_seed, 0x5AD0, index]).generate_state(1)[0] % 2**31)


def shadow_config(cfg: RunConfig) -> RunConfig:
    """The run's config for a shadow: same training; evaluation only at the end, no progress bar.

    Federated shadows run the in-process engine: the same functions as Flower's, and the same
    model for the same seed (tests/federated/test_flower.py), without a Flower engine per shadow.
    """
    federation = dataclasses.replace(cfg.federation, eval_every=cfg.federation.rounds, engine="inprocess")
    return dataclasses.replace(cfg, progress=False, federation=federation)


def train_on_users(cfg: RunConfig, data: Prepared, population: Population, keep_users: np.ndarray, seed: int):
    """Train with the run's harness on the population users flagged in ``keep_users``; returns the Outcome."""

    train = population.examples_of_users(keep_users)
    split = dataclasses.replace(data.split, train_users=population.users[keep_users])
    return train_model(cfg, dataclasses.replace(data, train=train, split=split), Seeds.from_seed(seed))


# -- workers -------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(cfg: RunConfig, data: Prepared, population: Population, threat: str, k: int) -> None:
    _WORKER.update(cfg=cfg, data=data, population=population, threat=threat, k=k)


def _train_one(index: int, keep_users: np.ndarray, seed: int) -> tuple[int, UnitStats, np.ndarray, dict]:
    w = _WORKER
    with single_threaded():
        outcome = train_on_users(w["cfg"], w["data"], w["population"], keep_users, seed)
        try:  # a diverged shadow has no scores to give: the same clear error as a diverged run
            check_finite(outcome.model, w["cfg"])
        except ConfigError as exc:
            raise ConfigError(f"shadow model {index} (trained on half of the users): {exc}") from None
        initial = w["data"].new_model(w["cfg"], Seeds.from_seed(seed))
        stats = unit_stats(outcome.model, w["population"], threat=w["threat"], k=w["k"], initial=initial)
    trained = trained_user_mask(w["population"], outcome.trained_users)
    return index, stats, w["population"].units_of_users(trained), outcome.privacy


def train_shadows(
    cfg: RunConfig,
    data: Prepared,
    population: Population,
    *,
    n_shadows: int,
    threat: str,
    k: int,
    workers: int,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None,
) -> ShadowSet:
    """Train ``n_shadows`` shadows on random halves of the population users and score every unit."""
    import time

    started = time.perf_counter()
    keep_users = keep_mask(n_shadows, len(population.users), rng)
    seeds = [shadow_seed(cfg.seed, i) for i in range(n_shadows)]
    shadow_cfg = shadow_config(cfg)
    results: list = [None] * n_shadows
    init = (shadow_cfg, data, population, threat, k)
    if workers <= 1:
        _init_worker(*init)
        for i in range(n_shadows):
            results[i] = _train_one(i, keep_users[i], seeds[i])
            if progress:
                progress(i + 1, n_shadows)
    else:
        context = multiprocessing.get_context("spawn")  # no fork: torch state is not fork-safe
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=init
        ) as pool:
            futures = [pool.submit(_train_one, i, keep_users[i], seeds[i]) for i in range(n_shadows)]
            for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                index, *rest = future.result()
                results[index] = (index, *rest)
                if progress:
                    progress(done, n_shadows)
    return ShadowSet(
        confidence=np.stack([r[1].confidence for r in results]),
        probability=np.stack([r[1].probability for r in results]),
        keep=np.stack([r[2] for r in results]),
        seconds=time.perf_counter() - started,
        privacy=tuple(r[3] for r in results),
    )
