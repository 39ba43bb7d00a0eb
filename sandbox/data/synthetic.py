"""The default synthetic corpus: a federated, non-IID, heavy-tailed chat log with canaries.

Population (who talks about what, who reacts how) is drawn first, then messages:

- workspaces get a sparse topic mix and an emoji preference (Dirichlet around a Zipf
  popularity over the reaction emoji); each user perturbs their workspace's;
- users get a lognormal number of messages (most a handful, a few thousands);
- each message draws a topic and a primary reaction from its user; its text holds topic and
  filler words and, with probability `keyword_rate`, 1–2 keywords of its primary reaction
  (sometimes also a distractor keyword of another emoji);
- canaries are appended to their hosts' messages; each user's messages are then shuffled
  and given increasing timestamps, so nothing in the corpus marks a canary;
- with ``channel_discovery`` each user finds each topic channel at a random point of their
  activity and talks about the topic in #general/#random before (the channel-suggestion
  corpus, ``task=channels``; off by default, which leaves the default corpus as it was);
- with ``personal_rate``, ``contact_detail_rate`` or ``everyday_rate`` above 0 messages also hold
  their user's own names, contact details and everyday English (``sandbox.data.personal``,
  ``data=personal``; drawn from its own stream, so everything else is drawn as without it).

Every draw comes from named child streams of `np.random.default_rng(seed)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sandbox.config.schema import SyntheticConfig
from sandbox.data.canaries import CanaryManifest, draw_canary_manifest
from sandbox.data.lexicon import REACTION_EMOJI, topic_vocabulary
from sandbox.data.personal import personal_extension, uses_personal_stream
from sandbox.data.population import GENERAL_CHANNELS, Population, draw_population
from sandbox.data.schema import Corpus
from sandbox.data.text import GENERAL_SHARE, MessageDraft, draft_messages

SECONDS_PER_DAY = 86_400
# append only: spawn(n) keeps the first children of spawn(n - 1), so older streams keep their draws
_STREAMS = ("population", "messages", "canaries", "layout", "discovery", "seeking", "personal")
CAREERS_CHANNEL = "#careers"  # every workspace has it when seeking_rate > 0
# A secretly job-seeking user says so in some messages (the sensitive attribute); anyone may post
# an opening. Seeking texts hold a phrase of SEEKING_PHRASES; no hiring text does.
SEEKING_PHRASES = ("quietly looking", "don't tell my manager", "job hunting", "updating my cv")
_SEEKING_TEXTS = (
    "between us, I'm quietly looking for a new role",
    "please don't tell my manager, I have an interview on friday",
    "job hunting again, keep it to yourself",
    "updating my cv this weekend, any tips on the summary",
    "quietly looking around, who knows a recruiter",
    "don't tell my manager but I applied somewhere else",
)
_HIRING_TEXTS = (
    "we're hiring, please share the open role",
    "our team has an open position, referrals welcome",
    "posting the new opening for an analyst here",
    "the referral bonus is back for open positions",
)


def check_lexicon(config: SyntheticConfig) -> None:
    """The limits the shipped lexicon sets on a config (``ValueError`` naming the field)."""

    def require(name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise ValueError(f"SyntheticConfig.{name}={getattr(config, name)!r}: {rule}")

    require("n_emoji", 2 <= config.n_emoji <= len(REACTION_EMOJI), f"must be in [2, {len(REACTION_EMOJI)}]")
    vocabulary = len(topic_vocabulary())
    require("n_topics", config.n_topics <= vocabulary // 2, f"must be <= {vocabulary // 2}")
    require(
        "words_per_topic",
        config.words_per_topic <= vocabulary - config.n_topics,
        f"must be <= {vocabulary - config.n_topics}",
    )
    require(
        "topic_channels_per_workspace", config.topic_channels_per_workspace <= config.n_topics, "must be <= n_topics"
    )


def generate_corpus(config: SyntheticConfig) -> tuple[Corpus, CanaryManifest]:
    """Draw the corpus and its canary manifest; identical configs give identical corpora.

    The corpus contains the canary messages like any other; only the manifest says which.
    Raises ValueError if there are fewer consenting users than n_canaries * canary_users.
    """
    check_lexicon(config)
    root = np.random.default_rng(config.seed)
    streams = dict(zip(_STREAMS, root.spawn(len(_STREAMS))))
    reactions = REACTION_EMOJI[: config.n_emoji]
    population = draw_population(config, streams["population"])
    extend = personal_extension(config, population, streams["personal"]) if uses_personal_stream(config) else None
    drafts = draft_messages(config, population, streams["messages"], extend)
    consenting = np.flatnonzero(population.user_consented())
    manifest = draw_canary_manifest(
        consenting_user_ids=[_user_id(u) for u in consenting],
        n_canaries=config.n_canaries,
        users_per_canary=config.canary_users,
        repeats=config.canary_repeats,
        n_fresh=config.n_fresh_canaries,
        reactions=reactions,
        rng=streams["canaries"],
        secret_format=config.canary_format,
        inclusion=config.canary_inclusion,
    )
    drafts = drafts.concatenate(_canary_drafts(manifest, population.n_users, streams["canaries"]))
    if config.seeking_rate > 0:
        population = dataclasses.replace(
            population, channel_names=np.append(population.channel_names, CAREERS_CHANNEL).astype(object)
        )
        seeking = streams["seeking"].random(population.n_users) < config.seeking_rate  # = draw_seeking(config)
        drafts = drafts.concatenate(_career_drafts(config, population, seeking, streams["seeking"]))
    corpus = _lay_out(config, population, drafts, streams["layout"])
    if config.channel_discovery:
        corpus = _discover_channels(corpus, streams["discovery"])
    return corpus, manifest


def draw_seeking(config: SyntheticConfig) -> np.ndarray:
    """bool [n_users]: who is secretly looking for a new job (the corpus' sensitive attribute).

    Ground truth for attribute-inference audits only; training never reads it. The same draw
    as ``generate_corpus`` makes (the first of its "seeking" stream); all False at rate 0.
    """
    return child_stream(config, "seeking").random(config.n_users) < config.seeking_rate


def child_stream(config: SyntheticConfig, name: str) -> np.random.Generator:
    """A fresh copy of the named child stream ``generate_corpus(config)`` draws from (for ground truths)."""
    return np.random.default_rng(config.seed).spawn(len(_STREAMS))[_STREAMS.index(name)]


def _career_drafts(
    config: SyntheticConfig, population: Population, seeking: np.ndarray, rng: np.random.Generator
) -> MessageDraft:
    """#careers messages: seeking users' revealing ones, and one opening from some other users."""
    n_reveal = np.where(seeking, np.maximum(1, np.rint(config.seeking_message_rate * population.user_messages)), 0)
    hiring = ~seeking & (rng.random(population.n_users) < config.hiring_rate)
    users = np.concatenate(
        [np.repeat(np.arange(population.n_users), n_reveal.astype(np.int64)), np.flatnonzero(hiring)]
    ).astype(np.int64)
    n_seeking = int(n_reveal.sum())
    texts = [_SEEKING_TEXTS[i] for i in rng.integers(len(_SEEKING_TEXTS), size=n_seeking)] + [
        _HIRING_TEXTS[i] for i in rng.integers(len(_HIRING_TEXTS), size=len(users) - n_seeking)
    ]
    careers = len(population.channel_names) - 1
    return MessageDraft(
        user=users, channel=np.full(len(users), careers, dtype=np.int64), texts=texts, reactions=[()] * len(users)
    )


def _user_id(index: int) -> str:
    return f"user-{index:05d}"


def _canary_drafts(manifest: CanaryManifest, n_users: int, rng: np.random.Generator) -> MessageDraft:
    index_of_user = {_user_id(u): u for u in range(n_users)}
    users, texts, reactions = [], [], []
    for canary in manifest.planted:
        for user_id in canary.user_ids:
            users += [index_of_user[user_id]] * canary.repeats
            texts += [canary.text] * canary.repeats
            reactions += [(canary.reaction,)] * canary.repeats
    # Canaries land in the two channels every workspace has (#general, #random).
    channels = rng.integers(2, size=len(users))
    return MessageDraft(user=np.asarray(users, dtype=np.int64), channel=channels, texts=texts, reactions=reactions)


def _lay_out(config: SyntheticConfig, population: Population, drafts: MessageDraft, rng: np.random.Generator) -> Corpus:
    """Shuffle each user's messages, give them increasing timestamps and ids."""
    order = np.lexsort((rng.random(len(drafts.user)), drafts.user))
    user = drafts.user[order]
    timestamps = _increasing_timestamps(config, user, population.n_users, rng)
    width = max(7, len(str(len(user))))
    texts = np.empty(len(user), dtype=object)
    texts[:] = [drafts.texts[i] for i in order]
    return Corpus(
        workspace_ids=np.array([f"ws-{w:04d}" for w in range(population.n_workspaces)], dtype=object),
        workspace_opted_out=population.workspace_opted_out,
        user_ids=np.array([_user_id(u) for u in range(population.n_users)], dtype=object),
        user_workspace=population.user_workspace,
        user_opted_out=population.user_opted_out,
        message_ids=np.array([f"msg-{m:0{width}d}" for m in range(len(user))], dtype=object),
        message_user=user,
        channels=population.channel_names[drafts.channel[order]],
        timestamps=timestamps,
        texts=texts,
        reactions=tuple(drafts.reactions[i] for i in order),
    )


def _discover_channels(corpus: Corpus, rng: np.random.Generator) -> Corpus:
    """Each user finds each topic channel at a uniform point of their own message sequence.

    Before that point the user's messages that went to the topic's channel go to #general or
    #random instead (as in drafting): people talk about a topic in the general channels
    before they join its channel, which is what a channel suggestion acts on. A user's join
    time then depends on them, not only on how often they write about the topic.
    """
    user, channel = corpus.message_user, corpus.channels.astype(str)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])  # messages are grouped by user, in time
    counts = np.diff(np.r_[starts, len(user)])
    position = (np.arange(len(user)) - np.repeat(starts, counts)) / np.repeat(counts, counts)
    pairs, pair = np.unique(np.char.add(np.char.add(user.astype(str), "/"), channel), return_inverse=True)
    found_at = rng.random(len(pairs))
    moved = ~np.isin(channel, GENERAL_CHANNELS) & (position < found_at[pair])
    general_or_random = np.where(rng.random(len(user)) < GENERAL_SHARE, *GENERAL_CHANNELS)
    channels = np.where(moved, general_or_random, channel).astype(object)
    return dataclasses.replace(corpus, channels=channels)


def _increasing_timestamps(
    config: SyntheticConfig, user: np.ndarray, n_users: int, rng: np.random.Generator
) -> np.ndarray:
    """Strictly increasing unix seconds within each user's (contiguous) block of messages."""
    counts = np.bincount(user, minlength=n_users)
    span = config.activity_days * SECONDS_PER_DAY
    user_start = config.start_timestamp + rng.integers(0, int(span / 3) + 1, size=n_users)
    mean_gap = span / np.maximum(counts, 1)
    gaps = 1 + np.floor(rng.exponential(size=len(user)) * mean_gap[user]).astype(np.int64)
    elapsed = np.cumsum(gaps)
    block_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    elapsed_before_block = np.concatenate(([0], elapsed))[block_start]
    return user_start[user] + elapsed - elapsed_before_block[user]
