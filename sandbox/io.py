"""The one way files are written: atomically (unique temp file in the target directory + rename).

A reader never sees a half-written file, two writers never share a temp name, and a failed
write leaves nothing behind. Files come out with the mode an ordinary ``open`` would give
(0666 minus the umask, usually 0644), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_bytes", "write_json", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, write: Callable[[Path], object], *, mode: int | None = None) -> None:
    """Call ``write(tmp_path)`` on a fresh temp file beside ``path``, then rename it onto ``path``: all or nothing.

    ``mode``: the file's permission bits (default ``0o666 & ~umask``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, (0o666 & ~_umask()) if mode is None else mode)
        os.close(fd)
        fd = -1
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path | str, data: bytes) -> None:
    write_atomic(path, lambda p: p.write_bytes(data))


def write_text(path: Path | str, text: str) -> None:
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path | str, obj) -> None:
    """Indented UTF-8 JSON with a final newline (record.json, claims, ledgers, manifests)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
