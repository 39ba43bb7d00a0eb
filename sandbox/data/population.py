"""Who is in the synthetic corpus: workspaces and users, their consent, tastes and activity.

Non-IID by construction: each workspace has a sparse topic mix (Dirichlet) and an emoji
preference (Dirichlet around a Zipf popularity), and each user a perturbation of their
workspace's. Activity is heavy-tailed (lognormal messages per user).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sandbox.data.lexicon import topic_vocabulary

if TYPE_CHECKING:
    from sandbox.data.synthetic import SyntheticConfig

GENERAL_CHANNELS = ("#general", "#random")


@dataclass(frozen=True, eq=False)
class Population:
    """Workspaces [W], users [U], topics [T] and emoji [E] of a synthetic corpus."""

    workspace_opted_out: np.ndarray  # bool [W]
    user_workspace: np.ndarray  # int64 [U]
    user_opted_out: np.ndarray  # bool [U]
    user_messages: np.ndarray  # int64 [U], messages to draft per user (canaries excluded)
    user_topic_mix: np.ndarray  # float [U, T], rows sum to 1
    user_emoji_pref: np.ndarray  # float [U, E], rows sum to 1
    topic_words: np.ndarray  # int64 [T, words_per_topic], indices into topic_vocabulary()
    channel_names: np.ndarray  # object [2 + T]: GENERAL_CHANNELS, then one per topic
    workspace_topic_channel: np.ndarray  # bool [W, T]: the workspace has a channel for topic t

    @property
    def n_workspaces(self) -> int:
        return len(self.workspace_opted_out)

    @property
    def n_users(self) -> int:
        return len(self.user_workspace)

    def user_consented(self) -> np.ndarray:
        return ~self.user_opted_out & ~self.workspace_opted_out[self.user_workspace]


def draw_population(config: SyntheticConfig, rng: np.random.Generator) -> Population:
    topic_words = _draw_topic_words(config, rng)
    workspace_topic_mix = rng.dirichlet(
        np.full(config.n_topics, config.workspace_topic_concentration), size=config.n_workspaces
    )
    workspace_emoji_pref = _dirichlet_rows(
        rng, config.workspace_emoji_concentration * emoji_popularity(config)[None, :], config.n_workspaces
    )
    user_workspace = _assign_workspaces(config, rng)
    vocabulary = np.array(topic_vocabulary(), dtype=object)
    return Population(
        workspace_opted_out=rng.random(config.n_workspaces) < config.workspace_opt_out_rate,
        user_workspace=user_workspace,
        user_opted_out=rng.random(config.n_users) < config.user_opt_out_rate,
        user_messages=_draw_message_counts(config, rng),
        user_topic_mix=_dirichlet_rows(rng, config.user_topic_concentration * workspace_topic_mix[user_workspace]),
        user_emoji_pref=_dirichlet_rows(rng, config.user_emoji_concentration * workspace_emoji_pref[user_workspace]),
        topic_words=topic_words,
        channel_names=np.array([*GENERAL_CHANNELS, *("#" + vocabulary[topic_words[:, 0]])], dtype=object),
        workspace_topic_channel=_top_k_mask(workspace_topic_mix, config.topic_channels_per_workspace),
    )


def emoji_popularity(config: SyntheticConfig) -> np.ndarray:
    """Overall reaction popularity [E], Zipf over the curated rank: ∝ rank^-s."""
    weights = np.arange(1, config.n_emoji + 1, dtype=float) ** -config.emoji_zipf_exponent
    return weights / weights.sum()


def _draw_topic_words(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Topic t's words: a distinct head word (its channel name), then random others."""
    order = rng.permutation(len(topic_vocabulary()))
    heads, rest = order[: config.n_topics], order[config.n_topics :]
    others = [rng.choice(rest, size=config.words_per_topic - 1, replace=False) for _ in range(config.n_topics)]
    return np.column_stack([heads[:, None], np.array(others).reshape(config.n_topics, -1)]).astype(np.int64)


def _assign_workspaces(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Every workspace gets one user, the rest go by lognormal size weights; then shuffle."""
    weights = rng.lognormal(0.0, config.workspace_size_sigma, size=config.n_workspaces)
    extra = rng.choice(config.n_workspaces, size=config.n_users - config.n_workspaces, p=weights / weights.sum())
    return rng.permutation(np.concatenate([np.arange(config.n_workspaces), extra])).astype(np.int64)


def _draw_message_counts(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    counts = rng.lognormal(np.log(config.messages_per_user_median), config.messages_per_user_sigma, size=config.n_users)
    return np.clip(np.rint(counts), 1, config.max_messages_per_user).astype(np.int64)


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """One Dirichlet draw per row of alpha [N, K] (or n_rows draws of alpha [1, K])."""
    alpha = np.broadcast_to(alpha, (n_rows or alpha.shape[0], alpha.shape[1]))
    # Gamma-normalisation, floored so that tiny alphas never produce an all-zero row.
    gammas = rng.standard_gamma(np.maximum(alpha, 1e-3)) + 1e-12
    return gammas / gammas.sum(axis=1, keepdims=True)


def _top_k_mask(mix: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(mix.shape, dtype=bool)
    if k:
        top = np.argsort(-mix, axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask, top, True, axis=1)
    return mask
