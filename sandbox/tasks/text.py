"""Hashed text: the featuriser and model every built-in task shares, and a base for message tasks.

Text is featurised with a *hashing* tokenizer (unigrams and bigrams hashed into a fixed
number of buckets). Hashing needs no vocabulary, so no statistic of the training data is
released outside the DP mechanism. The model is an embedding table with masked mean
pooling and a small MLP: the same function as ``nn.EmbeddingBag(mode="mean")``, written
with ``nn.Embedding`` so that any Opacus path applies; central DP-SGD computes its per-example
norms with ``sandbox.train.fastdp`` (about 1.2× a plain step; Opacus' ghost clipping 7.6×).

:class:`MessageTask` is a whole :class:`~sandbox.tasks.base.Task` for "message text → one
label": a subclass says which label each message has (``message_labels``) and how a canary is
labelled (``canary_label``); the emoji task is one, and so can a team's own task be.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from sandbox.config import ConfigError
from sandbox.config.schema import DataConfig
from sandbox.data import corpus_from_config
from sandbox.data.columnar import TokenTexts
from sandbox.data.normalize import text_words
from sandbox.data.partition import split_users
from sandbox.data.schema import Corpus
from sandbox.tasks.base import PAD, Examples, TaskData

MEMBERSHIP_ATTACKS = ("loss", "lira", "rmia", "canary")


def bucket_of(token: str, n_buckets: int) -> int:
    """Stable hash of a token into 1..n_buckets-1 (0 is padding); CRC32 is process-independent."""
    return zlib.crc32(token.encode("utf-8")) % (n_buckets - 1) + 1


def tokenize(text: str, *, bigrams: bool) -> list[str]:
    """The words of ``text`` (``sandbox.data.normalize.text_words``: letters, digits and emoji of every
    script, NFKC and case-folded), then with ``bigrams`` every adjacent pair joined by a space."""
    words = text_words(text)
    if bigrams:
        words = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return words


def featurize(texts, *, config) -> torch.Tensor:
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


class HashedBagModel(nn.Module):
    """Hashed bag of words → mean-pooled embedding → MLP → emoji logits."""

    def __init__(self, *, config, n_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(config.n_buckets, config.embedding_dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.embedding_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, n_classes),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # int32 ids (a columnar corpus' features) are widened here, a batch at a time: the embedding
        # lookup on int32 ids keeps memory it never returns (measured: ~0.7 KB per example evaluated)
        tokens = tokens.long()
        mask = (tokens != PAD).unsqueeze(-1).to(self.embedding.weight.dtype)
        pooled = (self.embedding(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.mlp(pooled)

    def forward_stacked(
        self, table: torch.Tensor, dense: list[torch.Tensor], rows: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
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
        pooled = nn.functional.embedding_bag(
            rows[mask], table, torch.cumsum(lengths, 0) - lengths, mode="sum", per_sample_weights=weights, sparse=True
        ).view(k, batch, -1)
        hidden = torch.relu(torch.baddbmm(b1.unsqueeze(1), pooled, w1.transpose(1, 2)))
        return torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))

    def pooling_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, T] the mean's weight of each position: 1 / length on a message's tokens, 0 on padding."""
        mask = (tokens != PAD).to(self.embedding.weight.dtype)
        return mask / mask.sum(-1, keepdim=True).clamp(min=1.0)

    @torch.no_grad()
    def loss_grads_stacked(
        self,
        table: torch.Tensor,
        dense: list[torch.Tensor],
        rows: torch.Tensor,
        pool: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``forward_stacked``'s loss and gradients in closed form, without autograd (``federated.batched``).

        ``rows`` [k, B, T] index ``table`` as in ``forward_stacked``; ``pool`` [k, B, T] are their
        ``pooling_weights`` (a padding position may index any row: its weight is 0). The loss of
        client c is Σ_b scale[c, b] · CE(logits[c, b], labels[c, b]). Returns (loss [k], row index,
        row gradient [k·B·T, dim], gradients of ``dense``): the embedding gradient is row-sparse and
        uncoalesced (a row looked up twice appears twice; ``index_add_`` sums them), as autograd's
        sparse ``embedding_bag`` gradient is. Equal to autograd through ``forward_stacked`` up to
        float summation order (a test checks it).
        """
        w1, b1, w2, b2 = dense
        k, batch, width = rows.shape
        pool = pool.reshape(k * batch, width)
        pooled = nn.functional.embedding_bag(
            rows.reshape(k * batch, width), table, mode="sum", per_sample_weights=pool
        ).view(k, batch, -1)
        pre = torch.baddbmm(b1.unsqueeze(1), pooled, w1.transpose(1, 2))
        hidden = pre.clamp(min=0)
        logits = torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))
        grad = logits.log_softmax(-1)  # [k, B, classes]: log p, then (p − onehot) · scale
        at_label = labels.unsqueeze(-1)
        loss = -(grad.gather(-1, at_label).squeeze(-1) * scale).sum(1)
        grad.exp_().scatter_add_(-1, at_label, torch.full(at_label.shape, -1.0, dtype=grad.dtype))
        grad.mul_(scale.unsqueeze(-1))
        d_w2, d_b2 = torch.bmm(grad.transpose(1, 2), hidden), grad.sum(1)
        d_pre = torch.bmm(grad, w2).mul_(pre > 0)
        d_w1, d_b1 = torch.bmm(d_pre.transpose(1, 2), pooled), d_pre.sum(1)
        d_pooled = torch.bmm(d_pre, w1).view(k * batch, 1, -1)
        row_grad = (d_pooled * pool.unsqueeze(-1)).view(k * batch * width, -1)
        return loss, rows.reshape(-1), row_grad, [d_w1, d_b1, d_w2, d_b2]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the k highest logits (ties broken by index)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels.unsqueeze(1)).any(dim=1).float().mean())


@torch.no_grad()
def evaluate(model: nn.Module, examples: Examples, *, k: int, batch_size: int = 4096) -> dict:
    """top-1 and top-k accuracy of ``model`` on ``examples``."""
    model.eval()
    if len(examples) == 0:
        return {"top1": float("nan"), f"top{k}": float("nan")}
    # hits counted a batch at a time, nothing kept per batch: holding every logit (and the allocator's
    # fragments around them) cost 6 GB on a million users' held-out examples
    hits = {1: 0, k: 0}
    for tokens, labels in zip(examples.tokens.split(batch_size), examples.labels.split(batch_size)):
        logits = model(tokens)
        for j in hits:
            top = logits.topk(min(j, logits.shape[1]), dim=1).indices
            hits[j] += int((top == labels.unsqueeze(1)).any(dim=1).sum())
    return {"top1": hits[1] / len(examples), f"top{k}": hits[k] / len(examples)}


def most_frequent_baseline(train: Examples, test: Examples, *, n_classes: int, k: int) -> dict:
    """Always suggest the emoji most frequent in training, in order of frequency."""
    counts = torch.bincount(train.labels, minlength=n_classes).to(torch.float32)
    logits = counts.expand(len(test), n_classes)
    return {"top1": topk_accuracy(logits, test.labels, 1), f"top{k}": topk_accuracy(logits, test.labels, k)}


def message_examples(
    corpus: Corpus, labels: list[str | None] | LabelCodes, *, users: np.ndarray, classes: tuple[str, ...], config
) -> Examples:
    """Examples of the given users (indices into ``corpus.user_ids``): their messages that have a label."""
    codes = labels if isinstance(labels, LabelCodes) else LabelCodes.of(labels)
    in_users = np.zeros(corpus.n_users, dtype=bool)
    in_users[users] = True
    index = np.flatnonzero(in_users[corpus.message_user] & (codes.codes >= 0))
    class_of_code = np.full(len(codes.names) + 1, -1, dtype=np.int64)  # slot −1: no label (never selected)
    class_of_code[[codes.names.index(c) for c in classes]] = np.arange(len(classes))
    y = class_of_code[codes.codes[index]]
    return Examples(
        tokens=message_features(corpus, index, config=config), labels=torch.from_numpy(y), message_index=index
    )


def message_features(corpus, index: np.ndarray, *, config) -> torch.Tensor:
    """``featurize`` of the texts of corpus rows ``index``; on a columnar corpus, from its word ids (int32)."""
    if isinstance(corpus.texts, TokenTexts):
        n_buckets = config.n_buckets
        features = corpus.texts.features(
            index,
            bucket=lambda token: bucket_of(token, n_buckets),
            max_tokens=config.max_tokens,
            bigrams=config.bigrams,
        )
        return torch.from_numpy(features)
    return featurize(corpus.texts[index], config=config)


@dataclass(frozen=True)
class LabelCodes:
    """Each message's label as an index into ``names`` (−1: unlabelled, not an example)."""

    codes: np.ndarray  # int64 [M]
    names: tuple[str, ...]

    @classmethod
    def of(cls, labels: list[str | None]) -> LabelCodes:
        names = tuple(sorted({label for label in labels if label is not None}))
        index = {name: i for i, name in enumerate(names)}
        return cls(np.fromiter((-1 if x is None else index[x] for x in labels), np.int64, len(labels)), names)

    def present(self, keep: np.ndarray) -> tuple[str, ...]:
        """The labels (sorted) of the messages flagged in ``keep``."""
        used = np.unique(self.codes[keep & (self.codes >= 0)])
        return tuple(sorted(self.names[c] for c in used.tolist()))


class MessageTask:
    """A :class:`~sandbox.tasks.base.Task` "message text → one label" over hashed text (mixin).

    The concrete class is a frozen dataclass with at least the fields ``name``, ``n_buckets``,
    ``max_tokens``, ``bigrams``, ``embedding_dim``, ``hidden_dim``, ``test_fraction``, ``top_k``
    (``sandbox.config.schema.EmojiTaskConfig`` has them) and defines :meth:`message_labels`.
    """

    attacks: ClassVar[tuple[str, ...]] = (*MEMBERSHIP_ATTACKS, "canary_clients", "server_view")

    def message_labels(self, corpus: Corpus) -> list[str | None]:
        """The label of each corpus message (None: unlabelled, not an example)."""
        raise NotImplementedError

    def label_codes(self, corpus) -> LabelCodes:
        """``message_labels`` as codes; a task may compute them without a Python object per message."""
        return LabelCodes.of(self.message_labels(corpus))

    def canary_label(self, canary) -> str | None:
        """The label a planted canary is scored with (None: the canary audit does not apply)."""
        return None

    def check(self, cfg) -> None:
        if cfg.audit.attack not in ("none", *self.attacks):
            raise ConfigError(
                f"audit.attack: task={self.name} is audited with one of "
                f"{', '.join(self.attacks)}, got {str(cfg.audit.attack)!r}"
            )
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"task.test_fraction: must be in (0, 1), got {self.test_fraction}")
        if self.n_buckets < 2:
            raise ConfigError(f"task.n_buckets: must be ≥ 2, got {self.n_buckets}")

    def prepare(self, data: DataConfig, rng: np.random.Generator) -> TaskData:
        corpus, manifest = corpus_from_config(data)
        split = split_users(corpus, test_fraction=self.test_fraction, rng=rng)
        labels = self.label_codes(corpus)
        in_split = np.zeros(corpus.n_users, dtype=bool)
        in_split[np.concatenate([split.train_users, split.test_users])] = True
        classes = labels.present(in_split[corpus.message_user])
        train = message_examples(corpus, labels, users=split.train_users, classes=classes, config=self)
        test = message_examples(corpus, labels, users=split.test_users, classes=classes, config=self)
        if len(train) == 0 or len(test) == 0:
            raise ConfigError("data: no labelled messages among the training or held-out users")
        return TaskData(corpus=corpus, manifest=manifest, split=split, classes=classes, train=train, test=test)

    def build_model(self, n_classes: int) -> nn.Module:
        return HashedBagModel(config=self, n_classes=n_classes)

    def evaluate(self, model: nn.Module, examples: Examples) -> dict:
        return evaluate(model, examples, k=self.top_k)

    def baseline(self, train: Examples, test: Examples, n_classes: int) -> dict:
        return most_frequent_baseline(train, test, n_classes=n_classes, k=self.top_k)

    def extra_metrics(self, model: nn.Module, data: TaskData, *, resamples: int, seed: int) -> dict:
        return {}

    def featurize(self, texts) -> torch.Tensor:
        return featurize(texts, config=self)
