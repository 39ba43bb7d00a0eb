"""Where consent is enforced: only consenting users ever become training or evaluation users.

A user is excluded when they opted out or their workspace admin opted the workspace out.
Everything downstream (central batches, federated clients) is built from a ``UserSplit``,
so an excluded user cannot reach a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.data.schema import Corpus, CorpusError


@dataclass(frozen=True)
class UserSplit:
    """Disjoint held-in (training) and held-out (evaluation) users, indices into ``corpus.user_ids``."""

    train_users: np.ndarray
    test_users: np.ndarray
    n_excluded_users: int  # opted out themselves or through their workspace


def split_users(corpus: Corpus, *, test_fraction: float, rng: np.random.Generator) -> UserSplit:
    """Drop non-consenting users, then hold out ``test_fraction`` of the rest (by user, not by message)."""
    if not 0.0 < test_fraction < 1.0:
        raise CorpusError(f"task.test_fraction must be in (0, 1), got {test_fraction}")
    return split_consenting(
        np.flatnonzero(corpus.user_consented()), n_users=corpus.n_users, test_fraction=test_fraction, rng=rng
    )


def split_consenting(
    consenting: np.ndarray, *, n_users: int, test_fraction: float, rng: np.random.Generator
) -> UserSplit:
    """The one user split of every task: hold out ``test_fraction`` of the consenting users (indices)."""
    if len(consenting) < 2:
        raise CorpusError(
            f"only {len(consenting)} consenting user(s) in the corpus: need at least 2 "
            "(one to train on, one to evaluate on)"
        )
    shuffled = rng.permutation(consenting)
    n_test = min(max(1, round(test_fraction * len(shuffled))), len(shuffled) - 1)
    return UserSplit(
        train_users=np.sort(shuffled[n_test:]),
        test_users=np.sort(shuffled[:n_test]),
        n_excluded_users=int(n_users - len(consenting)),
    )
