"""The run record (``record.json``): the contract between a run and everything that reads it.

Key names follow ../shared/DESIGN.md; add keys freely, never rename these. Files are
written atomically (temp file + rename), so a reader never sees a half-written record.
"""

from __future__ import annotations

import hashlib

import platform
from importlib import metadata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sandbox.io import write_atomic, write_json  # noqa: F401  (re-exported)
from sandbox.privacy import PrivacyBook
from sandbox.privacy.noise import NOISE_SOURCES, SEEDED_NOISE_WARNING

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


def privacy_section(*, mechanism: str, unit: str, book: PrivacyBook | None, steps: int,
                    noise_multiplier: float | None = None, sample_rate: float | None = None,
                    clip_norm: float | None = None, target_epsilon: float | None = None,
                    noise_source: str | None = None, **extra) -> dict:
    """The ``privacy`` section, read off the ``PrivacyBook`` (the one place ε comes from).

    ``epsilon`` is None exactly when the run was not private. ``steps`` are optimizer steps
    (central) or rounds (federated) that ran. A private run must say where its noise came
    from (``noise_source``, ``sandbox.privacy.noise``): ``secure_rng`` is true only for
    ``secure``, and a ``seeded`` run carries ``noise_warning``: its noise can be regenerated
    from the record, so it is not private against whoever holds the record.
    """
    if book is None:
        return {"mechanism": mechanism, "unit": unit, "epsilon": None, "delta": None, "accountant": None,
                "noise_multiplier": None, "sample_rate": None, "sampling": None, "steps": steps,
                "clip_norm": None, "neighbouring_relation": None, "noise_source": None, "events": []}
    if noise_source not in NOISE_SOURCES:
        raise ValueError(f"a private run's record needs its noise source, one of {NOISE_SOURCES}; "
                         f"got {noise_source!r}")
    warning = {"noise_warning": SEEDED_NOISE_WARNING} if noise_source == "seeded" else {}
    return {
        "mechanism": mechanism, "unit": book.unit, "epsilon": book.epsilon() if book.steps else 0.0,
        "delta": book.delta, "accountant": book.accountant, "noise_multiplier": noise_multiplier,
        "sample_rate": sample_rate, "sampling": "poisson", "steps": book.steps, "clip_norm": clip_norm,
        "target_epsilon": target_epsilon, "neighbouring_relation": f"add/remove one {book.unit}",
        # secure: the noise generators' state came from the OS CSPRNG and was never written down;
        # seeded: replayable from `seed`. Sampling is seeded either way (sandbox.privacy.noise)
        "noise_source": noise_source, "secure_rng": noise_source == "secure", **warning,
        "events": [e.to_json() for e in book.events],
        **extra,
    }


def model_fingerprint(state_dict: dict) -> str:
    """sha256 over the parameters' names, dtypes, shapes and bytes (in key order): two runs with the
    same fingerprint trained the same model, so their audits judge one model (``sandbox.claim``)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_state_dict(path: Path, state_dict: dict) -> None:
    write_atomic(path, lambda p: torch.save(state_dict, p))
