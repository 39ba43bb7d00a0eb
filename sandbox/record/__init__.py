"""The run record (``record.json``): the contract between a run and everything that reads it.

The typed record is ``RunRecord`` (``sandbox.record.schema``; every key in docs/record.md):
``load(run_dir)`` reads and checks one (``RecordError`` names the file and the key), ``save``
writes one atomically. Key names never change: outside tools read them. A bottom-layer module:
stdlib, numpy, torch (imported when needed) and ``sandbox.io`` only.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sandbox.io import write_atomic, write_json  # noqa: F401  (re-exported)
from sandbox.record.schema import (
    RECORD_FILE,
    SCHEMA_VERSION,
    Audit,
    CurvePoint,
    DataSection,
    Metrics,
    ModelSection,
    PrivacySection,
    ReauditOf,
    RecordError,
    RunRecord,
    Section,
    Timing,
    Versions,
    load,
    markdown,
    record_path,
    save,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "RECORD_FILE",
    "SCHEMA_VERSION",
    "Audit",
    "CurvePoint",
    "DataSection",
    "Metrics",
    "ModelSection",
    "Outcome",
    "PrivacySection",
    "ReauditOf",
    "RecordError",
    "RunRecord",
    "Section",
    "Timing",
    "Versions",
    "load",
    "markdown",
    "model_fingerprint",
    "record_path",
    "save",
    "versions",
    "write_atomic",
    "write_json",
    "write_state_dict",
]


def versions() -> dict:
    """Versions of what ran: Python and the libraries whose behaviour the numbers depend on."""
    import torch

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opacus": version("opacus"),
        "flwr": version("flwr"),
        "sandbox": version("sandbox"),
    }


@dataclass(frozen=True)
class Outcome:
    """What a trainer hands back to ``run``: the model and the record sections it owns."""

    model: nn.Module
    curve: list[dict]
    privacy: dict
    status: str  # completed | stopped_budget
    engine: str  # central | inprocess | flower | deployment
    data: dict = field(default_factory=dict)  # extra data counts (e.g. number of clients)
    timing: dict = field(default_factory=dict)
    trained_users: np.ndarray | None = None  # corpus user indices whose data took part (audits' members)
    observations: dict = field(
        default_factory=dict
    )  # federated observers' findings by name (sandbox.federated.observe)


def model_fingerprint(state_dict: dict) -> str:
    """sha256 over the parameters' names, dtypes, shapes and bytes (in key order): two runs with the
    same fingerprint trained the same model, so their audits judge one model (``sandbox.claim``)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_state_dict(path: Path, state_dict: dict) -> None:
    """``torch.save`` of ``state_dict``, atomically."""
    import torch

    write_atomic(path, lambda p: torch.save(state_dict, p))
