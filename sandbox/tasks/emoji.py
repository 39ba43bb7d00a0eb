"""Emoji suggestion: message text → the emoji a reader reacts with (multi-class).

Text is featurised with a *hashing* tokenizer (unigrams and bigrams hashed into a fixed
number of buckets). Hashing needs no vocabulary, so no statistic of the training data is
released outside the DP mechanism. The model is an embedding table with masked mean
pooling and a small MLP: the same function as ``nn.EmbeddingBag(mode="mean")``, written
with ``nn.Embedding`` because Opacus' ghost clipping has a fast per-sample norm for
``nn.Embedding`` (about 4× plain SGD here) and none for ``EmbeddingBag`` (about 50×).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sandbox.config.schema import EmojiTaskConfig
from sandbox.data.schema import Corpus

PAD = 0
_TOKEN = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class EmojiExamples:
    """Featurised examples: one row per message that has a reaction.

    ``tokens`` is [N, max_tokens] int64 (0 = padding), ``labels`` [N] int64 class ids,
    ``message_index`` [N] int64 rows of the corpus they came from (kept for audits and
    for checking consent; never fed to the model).
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    message_index: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def bucket_of(token: str, n_buckets: int) -> int:
    """Stable hash of a token into 1..n_buckets-1 (0 is padding); CRC32 is process-independent."""
    return zlib.crc32(token.encode("utf-8")) % (n_buckets - 1) + 1


def tokenize(text: str, *, bigrams: bool) -> list[str]:
    words = _TOKEN.findall(text.lower())
    if bigrams:
        words = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return words


def featurize(texts, *, config: EmojiTaskConfig) -> torch.Tensor:
    """Texts → [N, max_tokens] bucket ids. A cache makes repeated tokens cost one hash."""
    out = np.zeros((len(texts), config.max_tokens), dtype=np.int64)
    cache: dict[str, int] = {}
    for row, text in enumerate(texts):
        tokens = tokenize(text, bigrams=config.bigrams)[: config.max_tokens]
        for col, tok in enumerate(tokens):
            b = cache.get(tok)
            if b is None:
                b = cache[tok] = bucket_of(tok, config.n_buckets)
            out[row, col] = b
    return torch.from_numpy(out)


def emoji_classes(corpus: Corpus, *, users: np.ndarray) -> tuple[str, ...]:
    """The label space: primary reactions used by the given (consenting) users, sorted.

    Treated as public: in the products this is the catalogue of reaction emoji.
    """
    in_users = np.zeros(corpus.n_users, dtype=bool)
    in_users[users] = True
    keep = in_users[corpus.message_user]
    return tuple(sorted({r[0] for r, k in zip(corpus.reactions, keep) if k and r}))


def build_examples(
    corpus: Corpus, *, users: np.ndarray, classes: tuple[str, ...], config: EmojiTaskConfig
) -> EmojiExamples:
    """Examples of the given users (indices into ``corpus.user_ids``): messages with a reaction."""
    in_users = np.zeros(corpus.n_users, dtype=bool)
    in_users[users] = True
    has_label = np.fromiter((len(r) > 0 for r in corpus.reactions), bool, corpus.n_messages)
    index = np.flatnonzero(in_users[corpus.message_user] & has_label)
    class_id = {c: i for i, c in enumerate(classes)}
    labels = np.fromiter((class_id[corpus.reactions[i][0]] for i in index), np.int64, len(index))
    tokens = featurize(corpus.texts[index], config=config)
    return EmojiExamples(tokens=tokens, labels=torch.from_numpy(labels), message_index=index)


class EmojiModel(nn.Module):
    """Hashed bag of words → mean-pooled embedding → MLP → emoji logits."""

    def __init__(self, *, config: EmojiTaskConfig, n_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(config.n_buckets, config.embedding_dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.embedding_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, n_classes),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != PAD).unsqueeze(-1).to(self.embedding.weight.dtype)
        pooled = (self.embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.mlp(pooled)

    def forward_stacked(self, table: torch.Tensor, dense: list[torch.Tensor], rows: torch.Tensor,
                        tokens: torch.Tensor) -> torch.Tensor:
        """``forward`` for k clients at once, each with its own parameters (``federated.batched``).

        ``table`` [k·R, dim] holds every client's embedding rows, ``rows`` [k, B, T] indexes it
        (client c's tokens point into its own R rows), ``tokens`` [k, B, T] are the bucket ids
        (for the padding mask); ``dense`` is this model's other parameters, in ``parameters()``
        order, each with a leading client dimension. Returns logits [k, B, classes].
        """
        w1, b1, w2, b2 = dense
        k, batch, _ = rows.shape
        mask = tokens != PAD
        lengths = mask.sum(-1).reshape(-1)  # a fused mean over non-padding tokens (empty bag → 0)
        weights = (1.0 / lengths.clamp(min=1).to(table.dtype)).repeat_interleave(lengths)
        pooled = nn.functional.embedding_bag(rows[mask], table, torch.cumsum(lengths, 0) - lengths, mode="sum",
                                             per_sample_weights=weights, sparse=True).view(k, batch, -1)
        hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), pooled, w1.transpose(1, 2)))
        return torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the k highest logits (ties broken by index)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels.unsqueeze(1)).any(dim=1).float().mean())


@torch.no_grad()
def evaluate(model: nn.Module, examples: EmojiExamples, *, k: int, batch_size: int = 4096) -> dict:
    """top-1 and top-k accuracy of ``model`` on ``examples``."""
    model.eval()
    logits = torch.cat([model(t) for t in examples.tokens.split(batch_size)])
    return {"top1": topk_accuracy(logits, examples.labels, 1),
            f"top{k}": topk_accuracy(logits, examples.labels, k)}


def most_frequent_baseline(train: EmojiExamples, test: EmojiExamples, *, n_classes: int, k: int) -> dict:
    """Always suggest the emoji most frequent in training, in order of frequency."""
    counts = torch.bincount(train.labels, minlength=n_classes).to(torch.float32)
    logits = counts.expand(len(test), n_classes)
    return {"top1": topk_accuracy(logits, test.labels, 1),
            f"top{k}": topk_accuracy(logits, test.labels, k)}
