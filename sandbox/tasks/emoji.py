"""Emoji suggestion: message text → the emoji a reader reacts with (multi-class).

``EmojiTask`` (``task=emoji``) is a :class:`~sandbox.tasks.text.MessageTask`: the label of a
message is its first (primary) reaction; a planted canary is scored with its own reaction.
The featuriser and the model are the shared hashed-text ones (``sandbox.tasks.text``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sandbox.config.schema import EmojiTaskConfig
from sandbox.data.columnar import ReactionColumn
from sandbox.data.lexicon import REACTION_EMOJI
from sandbox.data.schema import Corpus
from sandbox.tasks.base import PAD, Examples  # noqa: F401  (re-exported: the names tests and tools know)
from sandbox.tasks.text import (  # noqa: F401  (re-exported)
    HashedBagModel,
    LabelCodes,
    MessageTask,
    bucket_of,
    evaluate,
    featurize,
    message_examples,
    most_frequent_baseline,
    tokenize,
    topk_accuracy,
)

EmojiExamples = Examples
EmojiModel = HashedBagModel


@dataclass(frozen=True)
class EmojiTask(EmojiTaskConfig, MessageTask):
    """``task=emoji``: the Hydra keys are ``EmojiTaskConfig``'s."""

    def message_labels(self, corpus: Corpus) -> list[str | None]:
        return [r[0] if r else None for r in corpus.reactions]

    def label_codes(self, corpus) -> LabelCodes:
        if isinstance(corpus.reactions, ReactionColumn):  # a columnar corpus: its primary reaction codes
            return LabelCodes(corpus.reactions.primary(), REACTION_EMOJI)
        return super().label_codes(corpus)

    def canary_label(self, canary) -> str | None:
        return canary.reaction


def emoji_classes(corpus: Corpus, *, users: np.ndarray) -> tuple[str, ...]:
    """The label space: primary reactions used by the given (consenting) users, sorted.

    Treated as public: in the products this is the catalogue of reaction emoji.
    """
    in_users = np.zeros(corpus.n_users, dtype=bool)
    in_users[users] = True
    keep = in_users[corpus.message_user]
    return tuple(sorted({r[0] for r, k in zip(corpus.reactions, keep) if k and r}))


def build_examples(corpus: Corpus, *, users: np.ndarray, classes: tuple[str, ...], config: EmojiTaskConfig) -> Examples:
    """Examples of the given users (indices into ``corpus.user_ids``): messages with a reaction."""
    in_users = np.zeros(corpus.n_users, dtype=bool)
    in_users[users] = True
    has_label = np.fromiter((len(r) > 0 for r in corpus.reactions), bool, corpus.n_messages)
    index = np.flatnonzero(in_users[corpus.message_user] & has_label)
    class_id = {c: i for i, c in enumerate(classes)}
    labels = np.fromiter((class_id[corpus.reactions[i][0]] for i in index), np.int64, len(index))
    tokens = featurize(corpus.texts[index], config=config)
    return Examples(tokens=tokens, labels=torch.from_numpy(labels), message_index=index)
