"""What an audit attacks: the population of units (users or examples), who trained, and each unit's statistic.

The population is every consenting user of the run's split (training and held-out users)
and their labelled messages. A unit is a **member** of a model when its data took part in
training: a user whose client was sampled at least once (federated) or any training user
(central, where every example is sampled with overwhelming probability over the epochs).
Held-out users and never-sampled users are non-members: that is the truth, not a guess.

The statistic of a unit under a model is computed from the model's outputs on the unit's
messages, as the threat model allows:

* ``scores``: the full output distribution, so LiRA's logit-scaled confidence
  ``log p_y − log Σ_{j≠y} p_j`` (and the label probability for RMIA);
* ``whitebox``: the weights, and the initialisation (known to whoever trains: it comes from
  the run's seed). A unit's statistic is the mean, over the distinct hash buckets of its
  messages, of ``log ‖θ_b − θ⁰_b‖`` for embedding row b: a row moves only if some training
  message used it, so a user whose rare words' rows never moved did not train (without DP,
  an untouched row stays exactly at its initial value; DP noise moves every row);
* ``topk``: only the ranked top-k suggestions a product shows: ``(k − rank)/k`` when the
  true emoji is shown, else 0.

A user's statistic is the mean over their messages ("customer data" means users).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sandbox.audit.attacks import label_probability, logit_confidence, mean_by_unit, topk_score
from sandbox.prepare import Prepared
from sandbox.tasks.base import PAD, Examples

THREATS = ("whitebox", "scores", "topk")
LEVELS = ("user", "example")


@dataclass(frozen=True)
class Population:
    """All audit targets' messages: featurised examples, their users, and unit ids per example."""

    examples: Examples  # training users' examples first, then held-out users'
    users: np.ndarray  # corpus user index of each population user (≥ 1 labelled message), sorted
    example_user: np.ndarray  # [n_examples] position in ``users`` of the example's user
    level: str

    @property
    def n_units(self) -> int:
        return len(self.users) if self.level == "user" else len(self.examples)

    def unit_of_example(self) -> np.ndarray:
        return self.example_user if self.level == "user" else np.arange(len(self.examples))

    def units_of_users(self, user_mask: np.ndarray) -> np.ndarray:
        """Boolean [n_units]: units belonging to the users flagged in ``user_mask`` [len(users)]."""
        return user_mask if self.level == "user" else user_mask[self.example_user]

    def examples_of_users(self, user_mask: np.ndarray) -> Examples:
        rows = np.flatnonzero(user_mask[self.example_user])
        return Examples(
            tokens=self.examples.tokens[rows],
            labels=self.examples.labels[rows],
            message_index=self.examples.message_index[rows],
        )


def build_population(data: Prepared, *, level: str) -> Population:
    """The run's training and held-out users and their featurised messages."""
    if level not in LEVELS:
        raise ValueError(f"audit.level must be one of {LEVELS}, got {level!r}")
    tokens = torch.cat([data.train.tokens, data.test.tokens])
    labels = torch.cat([data.train.labels, data.test.labels])
    message_index = np.concatenate([data.train.message_index, data.test.message_index])
    owner = data.corpus.message_user[message_index]
    users = np.unique(owner)  # users with at least one labelled message: the ones a model saw or could see
    return Population(
        examples=Examples(tokens=tokens, labels=labels, message_index=message_index),
        users=users,
        example_user=np.searchsorted(users, owner),
        level=level,
    )


@dataclass(frozen=True)
class UnitStats:
    """One model's statistics of every unit: ``confidence`` (LiRA / loss) and ``probability`` (RMIA)."""

    confidence: np.ndarray  # [n_units]
    probability: np.ndarray  # [n_units]


@torch.no_grad()
def model_logits(model: nn.Module, tokens: torch.Tensor, *, batch_size: int = 8192) -> torch.Tensor:
    model.eval()
    return torch.cat([model(t) for t in tokens.split(batch_size)]) if len(tokens) else torch.zeros(0, 0)


def example_stats(logits: torch.Tensor, labels: torch.Tensor, *, threat: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(confidence-like, probability-like) statistic per example under ``threat``."""
    if threat not in THREATS:
        raise ValueError(f"audit.threat must be one of {THREATS}, got {threat!r}")
    if threat == "topk":
        shown = topk_score(logits, labels, k)
        return shown, shown  # all the attacker has: the position of the true emoji among k suggestions
    return logit_confidence(logits, labels), label_probability(logits, labels)


def unit_stats(
    model: nn.Module, population: Population, *, threat: str, k: int, initial: nn.Module | None = None
) -> UnitStats:
    """Statistics of every unit of ``population`` under ``model`` (a user's: the mean over their messages).

    ``initial``: the model's initialisation, needed by the white-box statistic.
    """
    if threat == "whitebox":
        if initial is None:
            raise ValueError("the white-box statistic needs the model's initialisation")
        return whitebox_stats(model, initial, population)
    logits = model_logits(model, population.examples.tokens)
    confidence, probability = example_stats(logits, population.examples.labels, threat=threat, k=k)
    if population.level == "example":
        return UnitStats(confidence=confidence, probability=probability)
    unit, n = population.example_user, len(population.users)
    return UnitStats(confidence=mean_by_unit(confidence, unit, n), probability=mean_by_unit(probability, unit, n))


MOVED_FLOOR = 1e-12  # log of a row that did not move at all


@torch.no_grad()
def whitebox_stats(model: nn.Module, initial: nn.Module, population: Population) -> UnitStats:
    """Per unit: mean over its distinct token buckets of log ‖embedding row − its initial value‖."""
    return moved_rows_stats(
        model, initial, population.examples.tokens, population.unit_of_example(), population.n_units
    )


@torch.no_grad()
def moved_rows_stats(
    model: nn.Module, initial: nn.Module, tokens: torch.Tensor, unit: np.ndarray, n_units: int
) -> UnitStats:
    """White-box statistic of groups of messages (``unit[i]`` is message i's group)."""
    moved = (model.embedding.weight - initial.embedding.weight).norm(dim=1).double().numpy()
    tokens = tokens.numpy()
    rows, cols = np.nonzero(tokens != PAD)
    n_buckets = len(moved)
    pairs = np.unique(np.asarray(unit)[rows].astype(np.int64) * n_buckets + tokens[rows, cols])
    group, bucket = pairs // n_buckets, pairs % n_buckets
    log_moved = mean_by_unit(np.log(moved[bucket] + MOVED_FLOOR), group, n_units)
    mean_moved = mean_by_unit(moved[bucket], group, n_units)
    empty = np.isnan(log_moved)  # a message with no token at all: nothing could move
    log_moved[empty], mean_moved[empty] = np.log(MOVED_FLOOR), 0.0
    return UnitStats(confidence=log_moved, probability=mean_moved + MOVED_FLOOR)


def trained_user_mask(population: Population, trained_users: np.ndarray) -> np.ndarray:
    """Boolean [len(population.users)]: population users whose data took part in training."""
    return np.isin(population.users, trained_users)
