"""The run record (``record.json``): the contract between a run and everything that reads it.

Key names follow ../shared/DESIGN.md; add keys freely, never rename these. Files are
written atomically (temp file + rename), so a reader never sees a half-written record.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import torch

SCHEMA_VERSION = 1


def versions() -> dict:
    """Versions of what ran: Python and the libraries whose behaviour the numbers depend on."""
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "torch": torch.__version__,
            "opacus": version("opacus"), "flwr": version("flwr"), "sandbox": version("sandbox")}


def privacy_section(*, mechanism: str, unit: str, epsilon: float | None, delta: float | None,
                    accountant: str | None, noise_multiplier: float | None, sample_rate: float | None,
                    sampling: str | None, steps: int, clip_norm: float | None,
                    target_epsilon: float | None, events: list | None) -> dict:
    """The ``privacy`` section. ``epsilon`` is None exactly when the run was not private."""
    return {
        "mechanism": mechanism, "unit": unit, "epsilon": epsilon, "delta": delta,
        "accountant": accountant, "noise_multiplier": noise_multiplier,
        "sample_rate": sample_rate, "sampling": sampling, "steps": steps,
        "clip_norm": clip_norm, "target_epsilon": target_epsilon,
        "neighbouring_relation": "add/remove one example" if mechanism != "none" else None,
        "events": events or [],
    }


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: all or nothing."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8"))


def write_state_dict(path: Path, state_dict: dict) -> None:
    write_atomic(path, lambda p: torch.save(state_dict, p))
