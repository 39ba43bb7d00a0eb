"""The ``Task`` protocol: what the pipeline needs of a task, and nothing about any one task.

A task is a frozen dataclass whose fields are its Hydra keys (``task.*``) and whose class is
named by ``task._target_`` (``sandbox/conf/task/*.yaml``; a team's own: ``task._target_=my_pkg.MyTask``).
``sandbox.config.resolve`` builds it, checked against its fields; then

* ``prepare`` (``sandbox.prepare``) turns the data config and the split stream into
  :class:`TaskData`: the corpus, the consent-aware user split (always :func:`sandbox.data.partition.split_consenting`),
  the label space and the featurised training and held-out examples (:class:`Examples`);
* ``build_model`` gives the network (the same initialisation for a seed: ``Prepared.new_model``);
* ``evaluate`` / ``baseline`` / ``extra_metrics`` give the record's ``metrics``;
* audits read ``attacks`` (which ``audit.attack`` values apply), the examples' ``message_index``
  (the corpus rows, whose ``corpus.message_user`` are the units), ``featurize`` and
  ``canary_label`` (how a planted canary is scored).

Everything outside ``sandbox/tasks`` sees only this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from sandbox.config.schema import DataConfig

PAD = 0  # the padding token id of every hashed-text featuriser


@dataclass(frozen=True)
class Examples:
    """Featurised examples: one row per labelled unit row (a message, an interaction).

    ``tokens`` [N, T] int64 (0 = padding), ``labels`` [N] int64 class ids, ``message_index`` [N]
    int64 rows of the corpus they came from (``corpus.message_user[message_index]`` are their users;
    kept for audits and for checking consent, never fed to the model).
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    message_index: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TaskData:
    """What ``Task.prepare`` returns. ``corpus`` has at least ``n_users``, ``n_workspaces``, ``n_messages``,
    ``user_ids`` or ``n_users``, ``user_workspace``, ``workspace_opted_out``, ``message_user`` and
    ``fingerprint()``; ``extra`` is the task's own (recommenders: their interactions)."""

    corpus: Any
    manifest: Any  # sandbox.data.CanaryManifest | None
    split: Any  # sandbox.data.partition.UserSplit
    classes: tuple[str, ...]
    train: Examples
    test: Examples
    extra: Any = None


@runtime_checkable
class Task(Protocol):
    """See the module docstring. ``name`` is the record's ``task``; ``top_k`` the k of the metrics."""

    name: str
    top_k: int
    attacks: ClassVar[tuple[str, ...]]  # the audit.attack values this task supports (besides none)

    def check(self, cfg: Any) -> None:
        """Refuse (``ConfigError`` naming the key) a run config this task cannot run."""

    def prepare(self, data: DataConfig, rng: np.random.Generator) -> TaskData: ...

    def build_model(self, n_classes: int) -> nn.Module: ...

    def evaluate(self, model: nn.Module, examples: Examples) -> dict: ...

    def baseline(self, train: Examples, test: Examples, n_classes: int) -> dict: ...

    def extra_metrics(self, model: nn.Module, data: TaskData, *, resamples: int, seed: int) -> dict: ...

    def featurize(self, texts) -> torch.Tensor: ...

    def canary_label(self, canary) -> str | None: ...
