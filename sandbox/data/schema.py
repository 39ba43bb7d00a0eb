"""The in-memory corpus: workspaces → users → messages, with consent flags.

A `Corpus` is column-oriented (one numpy array per field) so that partitioning and
featurising 10^5+ messages stays vectorised. Foreign keys are integer indices:
`user_workspace[u]` indexes `workspace_ids`, `message_user[m]` indexes `user_ids`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

FINGERPRINT_VERSION = "sandbox.corpus.v1"


class CorpusError(ValueError):
    """Bad corpus input; str(e) names file, row and column where applicable."""


def _as_str_array(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise CorpusError(f"corpus field {name!r}: expected a 1-d array, got shape {array.shape}")
    if array.dtype.kind == "U" or (array.dtype == object and array.size == 0):
        return array.astype(object)
    if array.dtype != object:
        raise CorpusError(f"corpus field {name!r}: expected strings, got dtype {array.dtype}")
    if not all(type(value) is str for value in array.tolist()):
        raise CorpusError(f"corpus field {name!r}: expected every value to be a str")
    return array


def _as_int_array(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise CorpusError(f"corpus field {name!r}: expected a 1-d array, got shape {array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise CorpusError(f"corpus field {name!r}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _as_bool_array(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise CorpusError(f"corpus field {name!r}: expected a 1-d array, got shape {array.shape}")
    if array.size == 0:
        return array.astype(bool)
    if array.dtype != bool:
        raise CorpusError(f"corpus field {name!r}: expected booleans, got dtype {array.dtype}")
    return array


def _check_unique(name: str, ids: np.ndarray) -> None:
    if len(set(ids.tolist())) != len(ids):
        raise CorpusError(f"corpus field {name!r}: ids are not unique")


def _check_index(name: str, index: np.ndarray, size: int) -> None:
    if index.size and (index.min() < 0 or index.max() >= size):
        raise CorpusError(f"corpus field {name!r}: index out of range [0, {size})")


def _check_length(name: str, array, expected: int, of: str) -> None:
    if len(array) != expected:
        raise CorpusError(f"corpus field {name!r}: length {len(array)} != number of {of} ({expected})")


@dataclass(frozen=True, eq=False)
class Corpus:
    """Workspaces [W], users [U] and messages [M] as parallel column arrays.

    String columns are object arrays of `str`; indices are int64; flags are bool.
    `reactions[m]` lists the emoji characters on message m, primary reaction first.
    Inputs are normalised to those dtypes; invariants are checked on construction.
    """

    workspace_ids: np.ndarray
    workspace_opted_out: np.ndarray
    user_ids: np.ndarray
    user_workspace: np.ndarray
    user_opted_out: np.ndarray
    message_ids: np.ndarray
    message_user: np.ndarray
    channels: np.ndarray
    timestamps: np.ndarray
    texts: np.ndarray
    reactions: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        normalise = {
            "workspace_ids": _as_str_array,
            "workspace_opted_out": _as_bool_array,
            "user_ids": _as_str_array,
            "user_workspace": _as_int_array,
            "user_opted_out": _as_bool_array,
            "message_ids": _as_str_array,
            "message_user": _as_int_array,
            "channels": _as_str_array,
            "timestamps": _as_int_array,
            "texts": _as_str_array,
        }
        for name, to_array in normalise.items():
            object.__setattr__(self, name, to_array(name, getattr(self, name)))
        reactions = self.reactions
        if not isinstance(reactions, tuple) or not all(type(r) is tuple for r in reactions):
            reactions = tuple(tuple(r) for r in reactions)
            object.__setattr__(self, "reactions", reactions)
        self._check_invariants()

    def _check_invariants(self) -> None:
        w, u, m = len(self.workspace_ids), len(self.user_ids), len(self.message_ids)
        _check_length("workspace_opted_out", self.workspace_opted_out, w, "workspaces")
        for name in ("user_workspace", "user_opted_out"):
            _check_length(name, getattr(self, name), u, "users")
        for name in ("message_user", "channels", "timestamps", "texts", "reactions"):
            _check_length(name, getattr(self, name), m, "messages")
        _check_index("user_workspace", self.user_workspace, w)
        _check_index("message_user", self.message_user, u)
        for name in ("workspace_ids", "user_ids", "message_ids"):
            _check_unique(name, getattr(self, name))

    @property
    def n_workspaces(self) -> int:
        return len(self.workspace_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_messages(self) -> int:
        return len(self.message_ids)

    def user_consented(self) -> np.ndarray:
        """bool [U]: the user did not opt out and neither did their workspace's admin."""
        return ~self.user_opted_out & ~self.workspace_opted_out[self.user_workspace]

    def fingerprint(self) -> str:
        """sha256 hex digest of every field, in order; equal content ⇔ equal fingerprint."""
        digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
        for name in ("workspace_ids", "user_ids", "message_ids", "channels", "texts"):
            _hash_section(digest, name, json.dumps(getattr(self, name).tolist()).encode())
        _hash_section(digest, "reactions", json.dumps(self.reactions).encode())
        for name in ("user_workspace", "message_user", "timestamps"):
            _hash_section(digest, name, getattr(self, name).astype("<i8").tobytes())
        for name in ("workspace_opted_out", "user_opted_out"):
            _hash_section(digest, name, getattr(self, name).astype(np.uint8).tobytes())
        return digest.hexdigest()


def _hash_section(digest, name: str, payload: bytes) -> None:
    # Name and length prefix each section so no two field layouts serialise alike.
    digest.update(f"\x00{name}\x00{len(payload)}\x00".encode())
    digest.update(payload)
