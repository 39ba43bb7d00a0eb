"""The synthetic corpus drawn in chunks of users, as integer columns (``data.layout=columnar``).

The same model of a chat log as ``sandbox.data.synthetic.generate_corpus`` (the population is
drawn whole, from the same stream; the canaries too), but messages are drafted and laid out
for :data:`CHUNK_USERS` users at a time, each chunk from its own child of the "messages" and
"layout" streams, and kept as word ids (``sandbox.data.columnar``): memory grows with the
integer columns, never with one Python object per message. With a single chunk (at most
``chunk_users`` users) the draws are exactly ``generate_corpus``'s, so the corpus is the same
(a test compares fingerprints through ``ColumnarCorpus.to_corpus``); with more chunks it is
another draw of the same distribution.

Not drawn in chunks (refused, with the key): personal content, channel discovery and job
seeking (``data=personal``, ``task=channels``); they stay on the string layout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sandbox.config.schema import SyntheticConfig
from sandbox.data.canaries import CanaryManifest, draw_canary_manifest
from sandbox.data.columnar import (
    COLUMNAR_FROM,
    CodedStrings,
    ColumnarCorpus,
    ReactionColumn,
    TokenTexts,
    concatenate_consuming,
    csr_gather,
)
from sandbox.data.lexicon import REACTION_EMOJI
from sandbox.data.population import Population, draw_population
from sandbox.data.synthetic import _STREAMS, _canary_drafts, _increasing_timestamps, _user_id, check_lexicon
from sandbox.data.text import MessageDraft, draft_tokens

CHUNK_USERS = 25_000  # users drafted at once: bounds the drafting transients (~0.5 GB)


def uses_columnar(config: SyntheticConfig) -> bool:
    """``data.layout``: columnar, strings, or auto (columnar from ``COLUMNAR_FROM`` users)."""
    return config.layout == "columnar" or (config.layout == "auto" and config.n_users >= COLUMNAR_FROM)


def check_columnar(config: SyntheticConfig) -> None:
    """Refuse (``ValueError`` naming the field) what the chunked generator does not draw."""
    for name, off in (
        ("personal_rate", 0.0),
        ("contact_detail_rate", 0.0),
        ("everyday_rate", 0.0),
        ("seeking_rate", 0.0),
        ("channel_discovery", False),
    ):
        if getattr(config, name) != off:
            raise ValueError(
                f"SyntheticConfig.{name}={getattr(config, name)!r}: the columnar layout (data.layout=columnar, "
                f"or auto from {COLUMNAR_FROM:,} users) does not draw it; use data.layout=strings (memory grows "
                "with the corpus) or leave it at its default"
            )


def generate_columnar_corpus(
    config: SyntheticConfig, *, chunk_users: int = CHUNK_USERS
) -> tuple[ColumnarCorpus, CanaryManifest]:
    """Draw the corpus chunk by chunk of users; identical configs give identical corpora."""
    check_lexicon(config)
    check_columnar(config)
    root = np.random.default_rng(config.seed)
    streams = dict(zip(_STREAMS, root.spawn(len(_STREAMS))))
    population = draw_population(config, streams["population"])
    manifest = draw_canary_manifest(
        consenting_user_ids=[_user_id(u) for u in np.flatnonzero(population.user_consented())],
        n_canaries=config.n_canaries,
        users_per_canary=config.canary_users,
        repeats=config.canary_repeats,
        n_fresh=config.n_fresh_canaries,
        reactions=REACTION_EMOJI[: config.n_emoji],
        rng=streams["canaries"],
        secret_format=config.canary_format,
        inclusion=config.canary_inclusion,
    )
    canaries = _canary_drafts(manifest, population.n_users, streams["canaries"])
    bounds = list(range(0, population.n_users, chunk_users)) + [population.n_users]
    n_chunks = len(bounds) - 1
    messages = [streams["messages"]] if n_chunks == 1 else streams["messages"].spawn(n_chunks)
    layout = [streams["layout"]] if n_chunks == 1 else streams["layout"].spawn(n_chunks)
    words: dict[str, int] = {}
    parts = [
        _chunk(config, population, canaries, first, stop, messages[c], layout[c], words)
        for c, (first, stop) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]

    def column(key: str) -> np.ndarray:  # each chunk's part is freed once copied
        return concatenate_consuming([part.pop(key) for part in parts])

    lengths = column("lengths")
    texts = TokenTexts(
        words=tuple(words), tokens=column("tokens"), offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    )
    corpus = ColumnarCorpus(
        workspace_ids=np.array([f"ws-{w:04d}" for w in range(population.n_workspaces)], dtype=object),
        workspace_opted_out=population.workspace_opted_out,
        user_ids=np.array([_user_id(u) for u in range(population.n_users)], dtype=object),
        user_workspace=population.user_workspace,
        user_opted_out=population.user_opted_out,
        message_user=column("user"),
        channels=CodedStrings(population.channel_names, column("channel")),
        timestamps=column("timestamps"),
        texts=texts,
        reactions=ReactionColumn(column("reactions")),
    )
    return corpus, manifest


def _users(population: Population, first: int, stop: int) -> Population:
    """The population restricted to users [first, stop) (workspaces, topics and channels whole)."""
    return dataclasses.replace(
        population,
        user_workspace=population.user_workspace[first:stop],
        user_opted_out=population.user_opted_out[first:stop],
        user_messages=population.user_messages[first:stop],
        user_topic_mix=population.user_topic_mix[first:stop],
        user_emoji_pref=population.user_emoji_pref[first:stop],
    )


def _chunk(
    config: SyntheticConfig,
    population: Population,
    canaries: MessageDraft,
    first: int,
    stop: int,
    messages: np.random.Generator,
    layout: np.random.Generator,
    words: dict[str, int],
) -> dict[str, np.ndarray]:
    """Users [first, stop): their drafts and canaries, shuffled per user and timestamped (``_lay_out``'s draws)."""
    draft = draft_tokens(config, _users(population, first, stop), messages)
    ids = np.array([words.setdefault(w, len(words)) for w in draft.words], dtype=np.int32)
    lengths = np.bincount(draft.owner, minlength=len(draft.user))
    tokens = [ids[draft.tokens]]
    mine = np.flatnonzero((canaries.user >= first) & (canaries.user < stop))
    canary_words = [canaries.texts[i].split(" ") if canaries.texts[i] else [] for i in mine.tolist()]
    for split in canary_words:
        tokens.append(np.array([words.setdefault(w, len(words)) for w in split], dtype=np.int32))
    lengths = np.concatenate([lengths, [len(w) for w in canary_words]]).astype(np.int64)
    reaction_codes = np.full((len(mine), 3), -1, dtype=np.int16)
    reaction_codes[:, 0] = [REACTION_EMOJI.index(canaries.reactions[i][0]) for i in mine.tolist()]
    user = np.concatenate([draft.user, canaries.user[mine] - first])
    channel = np.concatenate([draft.channel, canaries.channel[mine]])
    reactions = np.concatenate([draft.reactions, reaction_codes])
    # _lay_out: each user's messages shuffled, then increasing timestamps (the same draws, in order)
    order = np.lexsort((layout.random(len(user)), user))
    user = user[order]
    timestamps = _increasing_timestamps(config, user, stop - first, layout)
    flat = np.concatenate(tokens)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ordered, ordered_lengths = csr_gather(flat, offsets, order)
    return {
        "user": (user + first).astype(np.int64),
        "channel": channel[order].astype(np.int16),
        "timestamps": timestamps,
        "tokens": ordered.astype(np.int32),
        "lengths": ordered_lengths,
        "reactions": reactions[order],
    }
