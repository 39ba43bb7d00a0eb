"""The corpus at scale: integer columns, no Python object per message (issue 17).

``data.layout=columnar`` (and ``auto`` from :data:`COLUMNAR_FROM` users) holds the synthetic
corpus as a :class:`ColumnarCorpus`: texts as word ids over one vocabulary (:class:`TokenTexts`,
CSR), reactions as small integer codes (:class:`ReactionColumn`), channels as codes into their
names, message ids computed from the row. A million users' ~32 M messages then take a few
hundred MB instead of many GB of Python strings and tuples.

Each column still answers ``len`` and ``[i]`` with what a :class:`~sandbox.data.schema.Corpus`
holds (a text, a reaction tuple, an id), built on access; :meth:`ColumnarCorpus.to_corpus`
materialises the whole corpus as strings (writing it to files, small tests). Featurisation
reads the word ids directly (:meth:`TokenTexts.features`): every word's normalised sub-tokens
are hashed once, bigrams once per distinct pair; equal to ``featurize`` on the strings (a test).

The fingerprint is of the integer columns (``sandbox.corpus.columnar.v1``): the same corpus
written to files and read back (a string corpus) has another fingerprint, as any other copy
of a data set would; the ledger keys budgets by fingerprint (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sandbox.data.lexicon import REACTION_EMOJI
from sandbox.data.normalize import text_words
from sandbox.data.schema import Corpus, _hash_section

COLUMNAR_FROM = 50_000  # data.layout=auto: a columnar corpus from this many users
FINGERPRINT_VERSION = "sandbox.corpus.columnar.v1"
_FEATURE_CHUNK = 1 << 19  # messages featurised at once


def csr_gather(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segments ``values[offsets[r]:offsets[r+1]]`` of ``rows``, concatenated, and their lengths."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    total = int(lengths.sum())
    if total == 0:
        return values[:0], lengths
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return values[np.arange(total) + shift], lengths


def _hash_array(digest, name: str, array: np.ndarray, dtype, chunk: int = 1 << 22) -> None:
    """``_hash_section`` of ``array`` as ``dtype`` bytes, converted a chunk at a time (no whole copy)."""
    flat = array.reshape(-1)
    itemsize = np.dtype(dtype).itemsize
    digest.update(f"\x00{name}\x00{len(flat) * itemsize}\x00".encode())
    for start in range(0, len(flat), chunk):
        digest.update(np.ascontiguousarray(flat[start : start + chunk].astype(dtype, copy=False)).tobytes())


def concatenate_consuming(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)``, emptying ``parts`` as it copies: peak memory is the result and one part."""
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    start = 0
    while parts:
        part = parts.pop(0)
        out[start : start + len(part)] = part
        start += len(part)
    return out


@dataclass(frozen=True, eq=False)
class TokenTexts:
    """Message m's text is ``" ".join(words[t] for t in tokens[offsets[m]:offsets[m+1]])``."""

    words: tuple[str, ...]
    tokens: np.ndarray  # int32 [K]
    offsets: np.ndarray  # int64 [M + 1]
    _subtokens: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _text(self, m: int) -> str:
        words = self.words
        return " ".join(words[t] for t in self.tokens[self.offsets[m] : self.offsets[m + 1]].tolist())

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            m = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= m < len(self):
                raise IndexError(f"message {key} out of range")
            return self._text(m)
        rows = np.arange(len(self))[key]
        out = np.empty(len(rows), dtype=object)
        out[:] = [self._text(m) for m in rows.tolist()]
        return out

    def __iter__(self) -> Iterator[str]:
        return (self._text(m) for m in range(len(self)))

    def tolist(self) -> list[str]:
        return list(self)

    def _word_subtokens(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """Each word's normalised tokens (``text_words``) as ids into one sub-token vocabulary (CSR)."""
        if not self._subtokens:
            index: dict[str, int] = {}
            ids, offsets = [], [0]
            for word in self.words:
                ids += [index.setdefault(s, len(index)) for s in text_words(word)]
                offsets.append(len(ids))
            self._subtokens.update(
                ids=np.asarray(ids, dtype=np.int64), offsets=np.asarray(offsets, dtype=np.int64), names=tuple(index)
            )
        s = self._subtokens
        return s["ids"], s["offsets"], s["names"]

    def features(self, rows: np.ndarray, *, bucket: Callable[[str], int], max_tokens: int, bigrams: bool) -> np.ndarray:
        """The task's ``featurize(self[rows])`` (words, then bigrams "a b", each hashed by ``bucket``,
        the first ``max_tokens``), computed on the word ids: int32 [len(rows), max_tokens]."""
        sub_ids, sub_offsets, names = self._word_subtokens()
        unigram = np.array([bucket(s) for s in names], dtype=np.int32)
        pairs = _PairBuckets(names, bucket)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), max_tokens), dtype=np.int32)
        for start in range(0, len(rows), _FEATURE_CHUNK):
            chunk = rows[start : start + _FEATURE_CHUNK]
            words, n_words = csr_gather(self.tokens, self.offsets, chunk)
            seq, n_seq = csr_gather(sub_ids, sub_offsets, words.astype(np.int64))
            per_message = np.add.reduceat(n_seq, np.r_[0, np.cumsum(n_words)[:-1]]) if len(n_seq) else n_seq
            per_message = np.where(n_words > 0, per_message, 0)
            owner = np.repeat(np.arange(len(chunk)), per_message)
            position = np.arange(len(seq)) - np.repeat(np.cumsum(per_message) - per_message, per_message)
            keep = position < max_tokens
            out[start + owner[keep], position[keep]] = unigram[seq[keep]]
            if bigrams and len(seq) > 1:
                adjacent = np.flatnonzero(owner[1:] == owner[:-1])
                column = per_message[owner[adjacent]] + position[adjacent]
                keep = column < max_tokens
                adjacent, column = adjacent[keep], column[keep]
                out[start + owner[adjacent], column] = pairs(seq[adjacent], seq[adjacent + 1])
        return out


class _PairBuckets:
    """Buckets of bigrams "a b" of sub-token ids, each distinct pair hashed once (sorted-key cache)."""

    def __init__(self, names: tuple[str, ...], bucket: Callable[[str], int]):
        self.names, self.bucket, self.width = names, bucket, max(len(names), 1)
        self.keys, self.values = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        keys = first * self.width + second
        unique, inverse = np.unique(keys, return_inverse=True)
        found = np.minimum(np.searchsorted(self.keys, unique), max(len(self.keys) - 1, 0))
        known = self.keys[found] == unique if len(self.keys) else np.zeros(len(unique), dtype=bool)
        if not known.all():
            new = unique[~known]
            names = self.names
            hashed = [self.bucket(f"{names[k // self.width]} {names[k % self.width]}") for k in new.tolist()]
            keys_all = np.concatenate([self.keys, new])
            order = np.argsort(keys_all, kind="stable")
            self.keys = keys_all[order]
            self.values = np.concatenate([self.values, np.asarray(hashed, dtype=np.int32)])[order]
        return self.values[np.searchsorted(self.keys, unique)][inverse]


@dataclass(frozen=True, eq=False)
class ReactionColumn:
    """``codes[m]`` indexes ``REACTION_EMOJI``: primary reaction first, −1 = none."""

    codes: np.ndarray  # int16 [M, 3]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, m: int) -> tuple[str, ...]:
        return tuple(REACTION_EMOJI[c] for c in self.codes[m].tolist() if c >= 0)

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return (tuple(REACTION_EMOJI[c] for c in row if c >= 0) for row in self.codes.tolist())

    def primary(self) -> np.ndarray:
        """int [M]: the primary reaction's index into ``REACTION_EMOJI`` (−1: no reaction)."""
        return self.codes[:, 0].astype(np.int64)


@dataclass(frozen=True, eq=False)
class CodedStrings:
    """A string column as codes into its distinct values: ``names[codes[m]]``."""

    names: np.ndarray  # object [V]
    codes: np.ndarray  # int [M]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key):
        return self.names[self.codes[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names[self.codes].tolist())

    def tolist(self) -> list[str]:
        return self.names[self.codes].tolist()


@dataclass(frozen=True, eq=False)
class RowIds:
    """``f"{prefix}{m:0{width}d}"`` for row m: ids that need no storage."""

    n: int
    prefix: str = "msg-"

    @property
    def width(self) -> int:
        return max(7, len(str(self.n)))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return f"{self.prefix}{int(np.arange(self.n)[key]):0{self.width}d}"
        out = np.empty(len(np.arange(self.n)[key]), dtype=object)
        out[:] = [f"{self.prefix}{m:0{self.width}d}" for m in np.arange(self.n)[key].tolist()]
        return out

    def __iter__(self) -> Iterator[str]:
        return (f"{self.prefix}{m:0{self.width}d}" for m in range(self.n))

    def tolist(self) -> list[str]:
        return list(self)


@dataclass(frozen=True, eq=False)
class ColumnarCorpus:
    """A :class:`~sandbox.data.schema.Corpus` (same fields, same meaning) held as integer columns."""

    workspace_ids: np.ndarray
    workspace_opted_out: np.ndarray
    user_ids: np.ndarray
    user_workspace: np.ndarray
    user_opted_out: np.ndarray
    message_user: np.ndarray
    channels: CodedStrings
    timestamps: np.ndarray
    texts: TokenTexts
    reactions: ReactionColumn
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m = len(self.message_user)
        for name in ("channels", "timestamps", "texts", "reactions"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"columnar corpus: {name} has {len(getattr(self, name))} rows, not {m}")

    @property
    def message_ids(self) -> RowIds:
        return RowIds(len(self.message_user))

    @property
    def n_workspaces(self) -> int:
        return len(self.workspace_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_messages(self) -> int:
        return len(self.message_user)

    def user_consented(self) -> np.ndarray:
        """bool [U]: the user did not opt out and neither did their workspace's admin."""
        return ~self.user_opted_out & ~self.workspace_opted_out[self.user_workspace]

    def fingerprint(self) -> str:
        """sha256 of every column (computed once): equal columns ⇔ equal fingerprint."""
        if "fingerprint" not in self._cache:
            digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
            for name, strings in (
                ("workspace_ids", self.workspace_ids.tolist()),
                ("user_ids", self.user_ids.tolist()),
                ("words", list(self.texts.words)),
                ("channel_names", self.channels.names.tolist()),
            ):
                _hash_section(digest, name, json.dumps(strings).encode())
            for name, array, dtype in (
                ("tokens", self.texts.tokens, "<i4"),
                ("offsets", self.texts.offsets, "<i8"),
                ("channels", self.channels.codes, "<i4"),
                ("reactions", self.reactions.codes, "<i2"),
                ("user_workspace", self.user_workspace, "<i8"),
                ("message_user", self.message_user, "<i8"),
                ("timestamps", self.timestamps, "<i8"),
                ("workspace_opted_out", self.workspace_opted_out, np.uint8),
                ("user_opted_out", self.user_opted_out, np.uint8),
            ):
                _hash_array(digest, name, array, dtype)
            self._cache["fingerprint"] = digest.hexdigest()
        return self._cache["fingerprint"]

    def to_corpus(self) -> Corpus:
        """The same corpus as strings (a :class:`~sandbox.data.schema.Corpus`; memory grows with it)."""
        return Corpus(
            workspace_ids=self.workspace_ids,
            workspace_opted_out=self.workspace_opted_out,
            user_ids=self.user_ids,
            user_workspace=self.user_workspace,
            user_opted_out=self.user_opted_out,
            message_ids=np.array(self.message_ids.tolist(), dtype=object),
            message_user=self.message_user,
            channels=np.array(self.channels.tolist(), dtype=object),
            timestamps=self.timestamps,
            texts=np.array(self.texts.tolist(), dtype=object),
            reactions=tuple(self.reactions),
        )
