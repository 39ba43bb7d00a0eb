"""Message drafts: topic, channel, reactions and text of every synthetic message, vectorised.

Word choice happens on integer token ids over one vocabulary (filler words, then topic
words, then emoji keywords); strings are only built once per message at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sandbox.data.lexicon import FILLER_WORDS, REACTION_EMOJI, emoji_keywords, topic_vocabulary
from sandbox.data.population import GENERAL_CHANNELS, Population

if TYPE_CHECKING:
    from sandbox.data.synthetic import SyntheticConfig

GENERAL_SHARE = 0.6  # of messages not in a topic channel: #general vs #random


@dataclass(frozen=True, eq=False)
class MessageDraft:
    """Messages before ordering and timestamps: user [M], channel index [M], texts, reactions."""

    user: np.ndarray  # int64 [M]
    channel: np.ndarray  # int64 [M], index into Population.channel_names
    texts: list[str]
    reactions: list[tuple[str, ...]]

    def concatenate(self, other: MessageDraft) -> MessageDraft:
        return MessageDraft(
            user=np.concatenate([self.user, other.user]).astype(np.int64),
            channel=np.concatenate([self.channel, other.channel]).astype(np.int64),
            texts=self.texts + other.texts,
            reactions=self.reactions + other.reactions,
        )


@dataclass(frozen=True, eq=False)
class _Vocabulary:
    words: tuple[str, ...]  # filler words, then topic vocabulary, then keywords
    topic_offset: int  # token id of topic_vocabulary()[0]
    keyword_ids: np.ndarray  # int64 [E, max keywords], padded by repeating
    keyword_counts: np.ndarray  # int64 [E]


def _build_vocabulary(n_emoji: int) -> _Vocabulary:
    words = list(FILLER_WORDS) + list(topic_vocabulary())
    index = {w: i for i, w in enumerate(words)}
    keywords = [emoji_keywords(c) for c in REACTION_EMOJI[:n_emoji]]
    for word in (w for group in keywords for w in group):
        if word not in index:
            index[word] = len(words)
            words.append(word)
    width = max(len(group) for group in keywords)
    ids = np.array([[index[group[j % len(group)]] for j in range(width)] for group in keywords])
    return _Vocabulary(
        words=tuple(words),
        topic_offset=len(FILLER_WORDS),
        keyword_ids=ids,
        keyword_counts=np.array([len(g) for g in keywords], dtype=np.int64),
    )


def sample_rows(probs: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per entry of `rows` from distribution probs[row] ([N, K] → [M])."""
    n, k = probs.shape
    cumulative = np.cumsum(probs, axis=1)
    cumulative /= cumulative[:, -1:]
    # Offset row r into (r, r + 1] so one searchsorted serves every row at once.
    flat = (cumulative + np.arange(n)[:, None]).ravel()
    flat[k - 1 :: k] = np.arange(1, n + 1)
    position = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.minimum(position - rows * k, k - 1)


@dataclass(frozen=True, eq=False)
class TokenDraft:
    """Messages as word ids before their strings are built: message m's words are
    ``words[tokens[k]]`` for the k with ``owner[k] == m``, in order (``owner`` is sorted)."""

    user: np.ndarray  # int64 [M]
    channel: np.ndarray  # int64 [M]
    words: tuple[str, ...]
    tokens: np.ndarray  # int64 [K]
    owner: np.ndarray  # int64 [K], non-decreasing
    reactions: np.ndarray  # int16 [M, 3]: indices into REACTION_EMOJI, primary first, -1 = none

    def texts(self) -> list[str]:
        return _join_texts(self.words, self.tokens, self.owner, len(self.user))


def draft_messages(
    config: SyntheticConfig,
    population: Population,
    rng: np.random.Generator,
    extend: Callable[
        [tuple[str, ...], np.ndarray, np.ndarray, np.ndarray], tuple[tuple[str, ...], np.ndarray, np.ndarray]
    ]
    | None = None,
) -> MessageDraft:
    """Draft every user's messages; canaries are added separately (``draft_tokens``, then strings)."""
    draft = draft_tokens(config, population, rng, extend)
    return MessageDraft(
        user=draft.user, channel=draft.channel, texts=draft.texts(), reactions=reaction_tuples(draft.reactions)
    )


def draft_tokens(
    config: SyntheticConfig,
    population: Population,
    rng: np.random.Generator,
    extend: Callable[
        [tuple[str, ...], np.ndarray, np.ndarray, np.ndarray], tuple[tuple[str, ...], np.ndarray, np.ndarray]
    ]
    | None = None,
) -> TokenDraft:
    """Every user's messages as word ids (the draws of ``draft_messages``, in the same order).

    ``extend`` (the personal content, ``sandbox.data.personal.personal_extension``) gets
    (words, token ids, owning message of each token, user of each message) before the words are
    shuffled within their messages and returns them extended; it draws from its own stream, so this
    one's draws (and every message's topic, channel and reactions) are the same with or without it.
    """
    vocabulary = _build_vocabulary(config.n_emoji)
    user = np.repeat(np.arange(population.n_users), population.user_messages)
    topic = sample_rows(population.user_topic_mix, user, rng)
    primary = sample_rows(population.user_emoji_pref, user, rng)
    channel = _draw_channels(config, population, user, topic, rng)
    tokens, owner = _draw_tokens(config, population, vocabulary, topic, primary, rng)
    reactions = _draw_reactions(config, population, user, primary, rng)
    words = vocabulary.words
    if extend is not None:
        words, tokens, owner = extend(words, tokens, owner, user)
    order = np.lexsort((rng.random(len(tokens)), owner))  # shuffle the words within each message
    return TokenDraft(
        user=user.astype(np.int64),
        channel=channel,
        words=words,
        tokens=tokens[order],
        owner=owner[order],
        reactions=reactions,
    )


def _draw_channels(
    config: SyntheticConfig, population: Population, user: np.ndarray, topic: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    has_channel = population.workspace_topic_channel[population.user_workspace[user], topic]
    in_topic_channel = has_channel & (rng.random(len(user)) < config.topic_channel_rate)
    general_or_random = (rng.random(len(user)) >= GENERAL_SHARE).astype(np.int64)
    return np.where(in_topic_channel, len(GENERAL_CHANNELS) + topic, general_or_random)


def _draw_tokens(
    config: SyntheticConfig,
    population: Population,
    vocabulary: _Vocabulary,
    topic: np.ndarray,
    primary: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and the message owning each: topic/filler words, keywords, distractors."""
    n = len(topic)
    n_words = 1 + rng.poisson(config.words_per_message - 1, size=n)
    owner_words = np.repeat(np.arange(n), n_words)
    rank = sample_rows(_zipf(config.words_per_topic)[None, :], np.zeros(len(owner_words), int), rng)
    topic_tokens = vocabulary.topic_offset + population.topic_words[topic[owner_words], rank]
    filler_tokens = rng.integers(len(FILLER_WORDS), size=len(owner_words))
    words = np.where(rng.random(len(owner_words)) < config.filler_rate, filler_tokens, topic_tokens)

    n_keywords = (rng.random(n) < config.keyword_rate) * (1 + (rng.random(n) < 0.5))
    owner_keywords = np.repeat(np.arange(n), n_keywords)
    keywords = _pick_keywords(vocabulary, primary[owner_keywords], rng)

    owner_distractors = np.flatnonzero(rng.random(n) < config.distractor_rate)
    other = primary[owner_distractors] + 1 + rng.integers(config.n_emoji - 1, size=len(owner_distractors))
    distractors = _pick_keywords(vocabulary, other % config.n_emoji, rng)
    return (
        np.concatenate([words, keywords, distractors]),
        np.concatenate([owner_words, owner_keywords, owner_distractors]),
    )


def _pick_keywords(vocabulary: _Vocabulary, emoji: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pick = np.floor(rng.random(len(emoji)) * vocabulary.keyword_counts[emoji]).astype(np.int64)
    return vocabulary.keyword_ids[emoji, pick]


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def _join_texts(words: tuple[str, ...], tokens: np.ndarray, owner: np.ndarray, n_messages: int) -> list[str]:
    """Join each message's tokens (grouped by ``owner``, in order) with single spaces."""
    lengths = np.array([len(w) for w in words], dtype=np.int64)[tokens] + 1
    text = " ".join(np.asarray(words, dtype=object)[tokens].tolist()) + " "
    ends = np.cumsum(lengths)
    counts = np.bincount(owner, minlength=n_messages)
    last = np.cumsum(counts)
    stops = np.where(counts > 0, ends[np.maximum(last - 1, 0)] - 1, 0).tolist()
    starts = np.concatenate(([0], ends))[last - counts].tolist()
    return [text[a:b] for a, b in zip(starts, stops)]


def _draw_reactions(
    config: SyntheticConfig, population: Population, user: np.ndarray, primary: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Primary reaction (with prob reaction_rate) plus up to two distinct extra ones: int16 [M, 3], -1 = none."""
    n = len(user)
    reacted = rng.random(n) < config.reaction_rate
    second = sample_rows(population.user_emoji_pref, user, rng)
    third = sample_rows(population.user_emoji_pref, user, rng)
    extra = rng.random(n)
    keep_second = reacted & (extra < config.extra_reaction_rate) & (second != primary)
    keep_third = keep_second & (extra < config.extra_reaction_rate**2) & (third != primary) & (third != second)
    return np.column_stack(
        [np.where(reacted, primary, -1), np.where(keep_second, second, -1), np.where(keep_third, third, -1)]
    ).astype(np.int16)


def reaction_tuples(codes: np.ndarray) -> list[tuple[str, ...]]:
    """The reactions of each message as emoji tuples (``codes`` [M, 3] as ``_draw_reactions`` gives them)."""
    emoji = REACTION_EMOJI
    return [tuple(emoji[c] for c in row if c >= 0) for row in codes.tolist()]
