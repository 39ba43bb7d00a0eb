"""Optional experiment tracking: a finished run's record logged to TensorBoard or MLflow.

``tracking.backend=tensorboard`` writes TensorBoard event files (``torch.utils.tensorboard``;
needs ``pip install tensorboard``, the ``tracking`` extra) into ``tracking.dir`` (default: the
run directory's ``tensorboard/``). ``tracking.backend=mlflow`` logs to MLflow (needs ``pip
install mlflow``; ``tracking.dir`` is the tracking URI, default MLflow's ``./mlruns``). Neither is
a dependency of the sandbox: the backend is checked before training, so a missing package
stops the run with a clear error and nothing written.

What is logged is the record, nothing else: the learning curve (held-out metrics, train loss,
ε per step or round), the final metrics, the audit's headline numbers, and the flattened
config as hyperparameters / params. The record stays the source of truth.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

from sandbox.record import RunRecord

BACKENDS = ("none", "tensorboard", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class TrackingError(ValueError):
    """The tracking backend cannot run here (e.g. its package is not installed)."""


def check_backend(backend: str) -> None:
    """Before training: the backend's package must be importable."""
    if backend not in BACKENDS:
        raise TrackingError(f"tracking.backend: must be one of {BACKENDS}, got {backend!r}")
    package = _PACKAGES.get(backend)
    if package and importlib.util.find_spec(package) is None:
        raise TrackingError(
            f"tracking.backend={backend} needs the {package} package, which is not installed: "
            f"pip install {package} (or `pip install -e '.[tracking]'` for tensorboard)"
        )


def flatten(config: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested config → {"privacy.target_epsilon": 4.0, ...}; lists and None become strings."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _typed(record: RunRecord | Mapping) -> RunRecord:
    """The record as a ``RunRecord`` (JSON data is read partially: what it has, type-checked)."""
    return record if isinstance(record, RunRecord) else RunRecord.from_json(record, partial=True)


def scalars(record: RunRecord | Mapping) -> list[tuple[str, int, float]]:
    """(tag, step, value) for every number of the learning curve, then the final metrics and audit."""
    record = _typed(record).to_json()
    out: list[tuple[str, int, float]] = []
    for point in record.get("curve", []):
        step = int(point.get("round", point.get("step", 0)))
        for key, value in point.items():
            if key in ("round", "step") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            out.append((f"curve/{key}", step, float(value)))
    last = max((s for _, s, _ in out), default=0)
    for key, value in record.get("metrics", {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((f"final/{key}", last, float(value)))
    ranking = record.get("metrics", {}).get("ranking", {})
    for group, values in ranking.items():
        for key, value in values.items():
            if isinstance(value, float):
                out.append((f"final/{group}/{key}", last, value))
    if record.get("privacy", {}).get("epsilon") is not None:
        out.append(("final/epsilon", last, float(record["privacy"]["epsilon"])))
    audit = record.get("audit") or {}
    for key in ("auc", "tpr_at_1pct_fpr", "eps_lower_bound"):
        if isinstance(audit.get(key), (int, float)):
            out.append((f"audit/{key}", last, float(audit[key])))
    if isinstance(audit.get("membership"), dict):
        out.append(("audit/membership_auc", last, float(audit["membership"]["auc"])))
    return out


def log_record(record: RunRecord | Mapping, *, backend: str, run_dir: Path, directory: str | None) -> str | None:
    """Log ``record`` with ``backend``; returns where it went (None for ``none``)."""
    check_backend(backend)
    if backend == "none":
        return None
    record = _typed(record).to_json()
    name = Path(run_dir).name
    if backend == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(directory) / name if directory else Path(run_dir) / "tensorboard"
        writer = SummaryWriter(log_dir=str(log_dir))
        try:
            for tag, step, value in scalars(record):
                writer.add_scalar(tag, value, step)
            writer.add_text("record/privacy", str(record.get("privacy", {})))
        finally:
            writer.close()
        return str(log_dir)
    import mlflow  # noqa: PLC0415 (optional dependency, checked above)

    if directory:
        mlflow.set_tracking_uri(directory)
    with mlflow.start_run(run_name=name):
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(record.get("config", {})).items()})
        for tag, step, value in scalars(record):
            mlflow.log_metric(tag.replace("@", "_at_"), value, step=step)
        mlflow.log_artifact(str(Path(run_dir) / "record.json"))
    return mlflow.get_tracking_uri()
