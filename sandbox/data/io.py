"""Corpora on disk: a directory of `workspaces.<ext>`, `users.<ext>`, `messages.<ext>`.

`ext` is one of jsonl, csv, parquet (all three files the same). An optional `canaries.json`
holds the canary manifest; it is never needed to load the corpus. Loading validates types,
ids and foreign keys once, at this boundary; writing is atomic and never overwrites.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sandbox.data.canaries import CanaryManifest
from sandbox.data.schema import Corpus, CorpusError
from sandbox.data.tables import READERS, Columns, Table, write_table

FORMATS = ("jsonl", "csv", "parquet")
MANIFEST_FILE = "canaries.json"
TABLE_KINDS: dict[str, dict[str, str]] = {
    "workspaces": {"workspace_id": "str", "opted_out": "bool"},
    "users": {"user_id": "str", "workspace_id": "str", "opted_out": "bool"},
    "messages": {
        "message_id": "str",
        "user_id": "str",
        "channel": "str",
        "timestamp": "int",
        "text": "str",
        "reactions": "reactions",
    },
}


def write_corpus(
    corpus: Corpus, directory: str | os.PathLike, *, fmt: str, manifest: CanaryManifest | None = None
) -> Path:
    """Write `corpus` (and `manifest` as canaries.json) into a new directory; return its path.

    Files are written into a temporary sibling directory that is renamed into place at the
    end, so an error leaves nothing behind. A non-empty existing target is refused.
    """
    if fmt not in FORMATS:
        raise CorpusError(f"unknown corpus format {fmt!r}; expected one of {', '.join(FORMATS)}")
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CorpusError(f"{target}: already exists and is not an empty directory; refusing to overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        for name, columns in corpus_tables(corpus).items():
            write_table(staging / f"{name}.{fmt}", columns, fmt)
        if manifest is not None:
            text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False)
            (staging / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def corpus_tables(corpus: Corpus) -> dict[str, Columns]:
    """The three tables of `corpus` as columns of plain Python values."""
    return {
        "workspaces": {"workspace_id": corpus.workspace_ids.tolist(), "opted_out": corpus.workspace_opted_out.tolist()},
        "users": {
            "user_id": corpus.user_ids.tolist(),
            "workspace_id": corpus.workspace_ids[corpus.user_workspace].tolist(),
            "opted_out": corpus.user_opted_out.tolist(),
        },
        "messages": {
            "message_id": corpus.message_ids.tolist(),
            "user_id": corpus.user_ids[corpus.message_user].tolist(),
            "channel": corpus.channels.tolist(),
            "timestamp": corpus.timestamps.tolist(),
            "text": corpus.texts.tolist(),
            "reactions": list(corpus.reactions),
        },
    }


def corpus_format(directory: str | os.PathLike) -> str:
    """The one format of the corpus files in `directory`; CorpusError if missing or mixed."""
    root = Path(directory)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a directory")
    found = {(name, fmt) for name in TABLE_KINDS for fmt in FORMATS if (root / f"{name}.{fmt}").is_file()}
    formats = sorted({fmt for _, fmt in found})
    if len(formats) > 1:
        listing = ", ".join(sorted(f"{name}.{fmt}" for name, fmt in found))
        raise CorpusError(f"{root}: mixed formats ({listing}); all three files must share one")
    if not formats:
        raise CorpusError(
            f"{root}: no corpus files (expected workspaces, users and messages as one of {', '.join(FORMATS)})"
        )
    missing = [f"{name}.{formats[0]}" for name in TABLE_KINDS if (name, formats[0]) not in found]
    if missing:
        raise CorpusError(f"{root}: missing {', '.join(missing)}")
    return formats[0]


def load_corpus(directory: str | os.PathLike) -> Corpus:
    """Read and validate a corpus directory (types, unique ids, foreign keys)."""
    root = Path(directory)
    fmt = corpus_format(root)
    tables = {name: READERS[fmt](root / f"{name}.{fmt}", kinds) for name, kinds in TABLE_KINDS.items()}
    workspaces, users, messages = tables["workspaces"], tables["users"], tables["messages"]
    workspace_index = _unique_index(workspaces, "workspace_id")
    user_index = _unique_index(users, "user_id")
    _unique_index(messages, "message_id")
    return Corpus(
        workspace_ids=_object_array(workspaces.columns["workspace_id"]),
        workspace_opted_out=np.array(workspaces.columns["opted_out"], dtype=bool),
        user_ids=_object_array(users.columns["user_id"]),
        user_workspace=_foreign_key(users, "workspace_id", workspace_index, workspaces.path),
        user_opted_out=np.array(users.columns["opted_out"], dtype=bool),
        message_ids=_object_array(messages.columns["message_id"]),
        message_user=_foreign_key(messages, "user_id", user_index, users.path),
        channels=_object_array(messages.columns["channel"]),
        timestamps=np.array(messages.columns["timestamp"], dtype=np.int64),
        texts=_object_array(messages.columns["text"]),
        reactions=tuple(messages.columns["reactions"]),
    )


def load_manifest(directory: str | os.PathLike) -> CanaryManifest | None:
    """The canary manifest stored with a corpus, or None if it has none."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return CanaryManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorpusError(f"{path}: not valid JSON ({error})") from None


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _unique_index(table: Table, column: str) -> dict[str, int]:
    values = table.columns[column]
    index = {value: row for row, value in enumerate(values)}
    if len(index) != len(values):
        first_row: dict[str, int] = {}
        for row, value in enumerate(values):
            if value in first_row:
                raise CorpusError(
                    f"{table.path}: {table.where(first_row[value])} and "
                    f"{table.where(row)}, column {column!r}: duplicate id {value!r}"
                )
            first_row[value] = row
    return index


def _foreign_key(table: Table, column: str, index: dict[str, int], parent: Path) -> np.ndarray:
    values = table.columns[column]
    try:
        return np.array([index[value] for value in values], dtype=np.int64)
    except KeyError:
        row = next(i for i, value in enumerate(values) if value not in index)
        raise table.error(row, column, f"unknown id {values[row]!r} (not in {parent.name})") from None
