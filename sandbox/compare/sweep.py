"""Find the runs of a Hydra multirun on disk: job directories, their overrides, and planned jobs
that never started.

A run is a directory holding ``record.json`` or ``.hydra/overrides.yaml`` (a Hydra job that
may have stopped before writing its record). Each ``multirun.yaml`` marks a sweep: its
parameters are expanded with Hydra's own ``BasicSweeper`` into the jobs it planned, and a
planned job number without a directory is a run that never started (Hydra stops a sweep at
the first job that exits). Several sweeps under one directory (e.g. one per task, in sibling
directories) are read together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class Job:
    """One run of the sweep: ``path`` (None: planned, never started), its Hydra job number and
    overrides, and ``label``: ``[sweep/]num`` plus the overrides that vary within its sweep."""

    path: Path | None
    sweep: Path | None  # the directory holding this job's multirun.yaml
    num: int | None
    overrides: tuple[str, ...]
    label: str = ""


@dataclass(frozen=True)
class Layout:
    """All runs found under a directory, and the overrides shared within each sweep (or directory of runs:
    key "" for ``root`` itself, else its path relative to ``root``). Labels show the overrides that vary
    within a sweep."""

    jobs: tuple[Job, ...]
    common_overrides: dict[str, tuple[str, ...]]
    notes: tuple[str, ...]  # e.g. a multirun.yaml whose planned jobs could not be read


def find_jobs(root: Path) -> Layout:
    """Every run under ``root`` (job directories and planned-but-missing jobs), labelled."""
    dirs = {p.parent for p in root.glob("**/record.json")}
    dirs |= {p.parent.parent for p in root.glob("**/.hydra/overrides.yaml")}
    sweeps = sorted(p.parent for p in root.glob("**/multirun.yaml"))
    jobs = [Job(path=d, sweep=_sweep_of(d, sweeps), num=_job_num(d), overrides=_overrides(d)) for d in sorted(dirs)]
    notes = []
    for sweep in sweeps:
        try:
            planned = planned_jobs(sweep / "multirun.yaml")
        except Exception as exc:  # a sweeper we cannot expand: report what is on disk only
            notes.append(
                f"{_rel(sweep, root)}/multirun.yaml: planned jobs unknown ({exc}); "
                "runs that never started cannot be listed"
            )
            continue
        present = {j.num for j in jobs if j.sweep == sweep}
        jobs += [
            Job(path=None, sweep=sweep, num=n, overrides=tuple(o)) for n, o in enumerate(planned) if n not in present
        ]
    groups: dict[Path, list[Job]] = {}
    for job in jobs:  # a sweep's jobs, or the runs side by side in one directory
        group = job.sweep if job.sweep is not None else job.path.parent if job.path != root else root
        groups.setdefault(group, []).append(job)
    labelled, common = [], {}
    for group, members in groups.items():
        shared, varying = _split_overrides(members)
        common[_rel(group, root) if group != root else ""] = shared
        labelled += [replace(j, label=_label(j, root, varying)) for j in members]
    return Layout(jobs=tuple(sorted(labelled, key=_order)), common_overrides=common, notes=tuple(notes))


def planned_jobs(multirun_yaml: Path) -> list[list[str]]:
    """The jobs a basic-sweeper multirun planned, in job-number order (Hydra's own expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = yaml.safe_load(multirun_yaml.read_text(encoding="utf-8"))["hydra"]
    target = (hydra_cfg.get("sweeper") or {}).get("_target_", BASIC_SWEEPER)
    if target != BASIC_SWEEPER:
        raise ValueError(f"sweeper {target} is not Hydra's basic sweeper")
    params = (hydra_cfg.get("sweeper") or {}).get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg["overrides"]["task"])
    overrides = OverridesParser.create().parse_overrides(args)
    return BasicSweeper.split_arguments(overrides, None)[0]


def _sweep_of(job_dir: Path, sweeps: list[Path]) -> Path | None:
    """The nearest directory above ``job_dir`` holding a multirun.yaml."""
    return next((p for p in job_dir.parents if p in sweeps), None)


def _job_num(job_dir: Path) -> int | None:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        try:
            num = yaml.safe_load(hydra_yaml.read_text(encoding="utf-8"))["hydra"]["job"]["num"]
            if isinstance(num, int):
                return num
        except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError):
            pass
    match = re.match(r"(\d+)(_|$)", job_dir.name)  # the layout's ${hydra.job.num}_...
    return int(match.group(1)) if match else None


def _overrides(job_dir: Path) -> tuple[str, ...]:
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else []
    except (yaml.YAMLError, UnicodeDecodeError):
        return ()
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _split_overrides(jobs: list[Job]) -> tuple[tuple[str, ...], set[str]]:
    """Overrides shared by all ``jobs`` (as given), and the keys whose value differs between them."""
    maps = [dict(_key_value(o) for o in j.overrides) for j in jobs]
    keys = {k for m in maps for k in m}
    # values compared case-insensitively: Hydra writes `progress=False` for a `progress=false` given
    varying = {k for k in keys if len({(k in m, str(m.get(k)).lower()) for m in maps}) > 1}
    common = tuple(o for o in (jobs[0].overrides if jobs else ()) if _key_value(o)[0] not in varying)
    return common, varying


def _label(job: Job, root: Path, varying: set[str]) -> str:
    """``[dir/]num override…`` for a sweep job (planned, or named ``num_…`` / ``num`` as Hydra's sweep
    layout does); otherwise the directory relative to ``root``."""
    if job.path is not None and (job.num is None or not re.match(rf"{job.num}(_|$)", job.path.name)):
        return _rel(job.path, root)
    group = job.sweep if job.path is None else job.path.parent
    prefix = "" if group == root else f"{_rel(group, root)}/"
    shown = [o.lstrip("+~") for o in job.overrides if _key_value(o)[0] in varying]
    return f"{prefix}{job.num}" + (f" {' '.join(shown)}" if shown else "")


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return root.name if rel == "." else rel


def _order(job: Job):
    return (str(job.sweep or ""), job.num if job.num is not None else -1, str(job.path or ""))
