"""Audit an already-trained model again, with another audit config (``python -m sandbox.audit``).

A run holds one audit, and a promise such as "cannot learn, memorize or reproduce" needs
several (LiRA, the canary audit). Training again with the same config and seed gives the same
model only without DP: the DP noise and the mechanisms' sampling come from the OS CSPRNG
(``privacy.noise_source=secure``). So the model is trained once and audited again from its
run directory:

    python -m sandbox.audit RUN_DIR OUT_DIR [audit=NAME] [audit.KEY=VALUE ...]

* **What is read** (refused, ``ReauditError``, when missing or wrong; the message names the
  file): ``RUN_DIR/record.json`` of a ``completed`` or ``stopped_budget`` run; ``model.pt``,
  whose fingerprint (``sandbox.record.model_fingerprint``) must be the record's
  ``model.sha256``; and the audit's members, ``trained_users.npy`` (the users whose data took
  part). A central run's members are its training users, so a central run without the file
  (older runs) is re-audited with them; a federated run's members are the users whose client
  was sampled, which no re-run can find again, so a federated run without the file is refused
  (``audit=suggestions`` does not need them: its members are the training users).
* **The config** is the record's own (``record["config"]``, the resolved one) with only the
  audit changed: ``audit=NAME`` takes the group ``conf/audit/NAME.yaml`` (Hydra's compose API),
  ``audit.KEY=VALUE`` changes one key of it (or of the run's own audit config without
  ``audit=NAME``). Any other key is refused (``ConfigError`` naming it): the model's config is
  what trained it. The data are rebuilt from the config (deterministic from the seeds, and
  checked against the record's ``data.fingerprint``).
* **The ledger** (``cfg.ledger.path`` of the run's config): the audit's planned models (shadows,
  a positive control) are checked against ``ledger.total_epsilon`` before anything trains, and
  the models it trained (``audit.models_trained``) are recorded as one entry. The trained model
  is not charged again.
* **What is written** into OUT_DIR (new, or empty): ``model.pt`` (a copy: ``model.sha256``
  still matches), ``trained_users.npy``, ``canaries.json`` when the run has one, the audit's own
  files (``roc.png``, ``audit_scores.npz``), and last, atomically, ``record.json``: the run's
  record with ``audit`` and ``config.audit`` replaced, ``status`` recomputed (``failed`` when the
  audit finds a probable DP bug: ``ProbableDPBug`` is raised after the record is written),
  ``timing`` of the re-audit (the run's under ``timing.original``) and ``reaudit_of: {run_dir,
  record_sha256}`` (sha256 of the run's record.json bytes). A re-audit that stops with an error
  leaves OUT_DIR as it found it.

The records of RUN_DIR and OUT_DIR (and of other re-audits) then carry one ``model.sha256``
and are judged together: ``python -m sandbox.claim CLAIM RUN_DIR OUT_DIR``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from sandbox.config import ConfigError, RunConfig, resolve

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
RECORD_FILE, MODEL_FILE, CANARIES_FILE = "record.json", "model.pt", "canaries.json"
REAUDITABLE = ("completed", "stopped_budget")


class ReauditError(ValueError):
    """RUN_DIR or OUT_DIR cannot be used; the message names the file and why."""


# -- the audit overrides ----------------------------------------------------------------------------
def parse_overrides(overrides: list[str]) -> tuple[str | None, list[tuple[str, str, object]]]:
    """(``NAME`` of ``audit=NAME`` or None, [(kind, audit key, value)]) of Hydra-style overrides.

    ``kind`` is ``set`` (``audit.KEY=VALUE``, ``+``/``++`` allowed) or ``delete`` (``~audit.KEY``:
    back to the default). Any key outside ``audit`` raises ``ConfigError`` naming it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    group, changes = None, []
    for text in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides(overrides=[text])
        except HydraException as exc:
            raise ConfigError(f"{text}: not an override (audit=NAME or audit.KEY=VALUE): "
                              f"{str(exc).splitlines()[0]}") from None
        key = override.key_or_group
        if key != "audit" and not key.startswith("audit."):
            raise ConfigError(f"{key}: a re-audit changes only the audit (audit=NAME, audit.KEY=VALUE); "
                              f"{key} is part of the trained model's config (RUN_DIR/record.json → config)")
        if override.package is not None:
            raise ConfigError(f"{text}: package overrides (@) are not supported by a re-audit")
        if override.is_sweep_override():
            raise ConfigError(f"{key}: a re-audit runs one audit, not a sweep ({text}); run one per audit")
        if key == "audit":
            value = override.value()
            if override.type != OverrideType.CHANGE or not isinstance(value, str):
                raise ConfigError(f"audit: expected audit=NAME (a file in conf/audit/), got {text!r}")
            group = value
            continue
        kind = "delete" if override.is_delete() else "set"
        changes.append((kind, key[len("audit."):], None if kind == "delete" else override.value()))
    return group, changes


def audit_group(name: str) -> dict:
    """``conf/audit/NAME.yaml`` as Hydra composes it for ``audit=NAME``."""
    from hydra import compose, initialize_config_dir

    known = sorted(p.stem for p in (CONF_DIR / "audit").glob("*.yaml"))
    if name not in known:
        raise ConfigError(f"audit={name}: no such audit (conf/audit/{name}.yaml); known: {', '.join(known)}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=[f"audit={name}"])
    return OmegaConf.to_container(composed.audit, resolve=True)


def audit_config(original: dict, overrides: list[str]) -> dict:
    """The new ``config.audit``: the run's own (or ``audit=NAME``'s group) with the key overrides applied."""
    group, changes = parse_overrides(overrides)
    node = OmegaConf.create(audit_group(group) if group is not None else copy.deepcopy(original or {}))
    for kind, key, value in changes:
        if kind == "delete":
            parent, _, leaf = key.rpartition(".")
            target = OmegaConf.select(node, parent) if parent else node
            if target is None or leaf not in target:
                raise ConfigError(f"audit.{key}: cannot delete, not in the audit config")
            target.pop(leaf)
        else:
            OmegaConf.update(node, key, value, merge=False)
    return OmegaConf.to_container(node, resolve=True)


# -- the run directory --------------------------------------------------------------------------------
def read_run(run_dir: Path) -> tuple[dict, bytes, dict]:
    """(record, the record file's bytes, model.pt's state dict), refused unless the record is of that model."""
    from sandbox.record import model_fingerprint
    import torch

    record_path, model_path = run_dir / RECORD_FILE, run_dir / MODEL_FILE
    if not record_path.is_file():
        raise ReauditError(f"{record_path}: missing: not the directory of a finished run (a run writes "
                           "record.json last, when it completes)")
    raw = record_path.read_bytes()
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ReauditError(f"{record_path}: not a readable JSON record: {exc}") from None
    if not isinstance(record, dict):
        raise ReauditError(f"{record_path}: not a run record (a JSON object)")
    status = record.get("status")
    if status not in REAUDITABLE:
        raise ReauditError(f"{record_path}: status: {status!r}: only the model of a completed run "
                           f"({' or '.join(REAUDITABLE)}) is re-audited")
    for key in ("config", "privacy", "model"):
        if not isinstance(record.get(key), dict):
            raise ReauditError(f"{record_path}: {key}: missing from the record")
    sha = record["model"].get("sha256")
    if not isinstance(sha, str):
        raise ReauditError(f"{record_path}: model.sha256: missing, so {model_path} cannot be shown to be its model")
    if not model_path.is_file():
        raise ReauditError(f"{model_path}: missing beside {record_path}")
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
        found = model_fingerprint(state)
    except Exception as exc:  # not a state dict
        raise ReauditError(f"{model_path}: not a readable state dict: {exc}") from None
    if found != sha:
        raise ReauditError(f"{model_path}: its fingerprint {found[:12]}… is not the model.sha256 {sha[:12]}… of "
                           f"{record_path}: the record is not of this model (replaced or retrained?)")
    return record, raw, state


def trained_users(run_dir: Path, record: dict, cfg: RunConfig, data) -> np.ndarray | None:
    """The audit's members: RUN_DIR/trained_users.npy, or a central run's training users; None when the
    audit needs none (``audit=suggestions`` of a federated run without the file)."""
    from sandbox.run import TRAINED_USERS_FILE

    path = run_dir / record["model"].get("trained_users_file", TRAINED_USERS_FILE)
    train_users = np.asarray(data.split.train_users)
    if not path.is_file():
        if cfg.mode == "central":  # every training user trained
            return train_users.astype(np.int64)
        if cfg.audit.attack == "suggestions":
            return None
        raise ReauditError(f"{path}: missing: a federated run's members are the users whose client was sampled, "
                           "and sampling is not reproducible (privacy.noise_source=secure draws it from the OS "
                           "CSPRNG), so runs save them there; this run predates that. Train it again (its audits "
                           "then come from python -m sandbox.audit on the new run directory)")
    try:
        users = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ReauditError(f"{path}: not a readable .npy array: {exc}") from None
    if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise ReauditError(f"{path}: expected a 1-d array of corpus user indices, got {users.dtype} {users.shape}")
    if not np.isin(users, train_users).all():
        raise ReauditError(f"{path}: holds users that are not training users of the run's split: not this run's")
    return users.astype(np.int64)


def _check_out_dir(out_dir: Path) -> bool:
    """Refuse an OUT_DIR that exists and is not an empty directory; True when it must be created."""
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        raise ReauditError(f"{out_dir}: exists and is not a directory")
    if any(out_dir.iterdir()):
        raise ReauditError(f"{out_dir}: exists and is not empty; a re-audit writes into a new (or empty) directory")
    return False


def _copy(source: Path, target: Path) -> None:
    from sandbox.record import write_atomic

    write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def _discard(out_dir: Path, created: bool) -> None:
    """Empty OUT_DIR again (it was new or empty), so a failed re-audit leaves nothing behind."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    if created:
        out_dir.rmdir()


# -- the re-audit -------------------------------------------------------------------------------------
def reaudit(run_dir: str | Path, out_dir: str | Path, overrides: list[str] = ()) -> dict:
    """Audit RUN_DIR's model with the audit ``overrides`` into OUT_DIR (see the module docstring); returns
    the new record. Raises ``ConfigError`` / ``ReauditError`` (nothing written), ``LedgerError``, and
    ``ProbableDPBug`` after writing a ``failed`` record."""
    from sandbox.audit.harness import ProbableDPBug
    from sandbox.prepare import Seeds, prepare
    from sandbox.privacy.ledger import PrivacyLedger
    from sandbox.record import Outcome, write_json
    from sandbox.run import (
        TRAINED_USERS_FILE, audit_outcome, audit_spend, check_finite, planned_audit_spend, write_trained_users,
    )

    started = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    parse_overrides(list(overrides))  # a key outside audit is refused before anything is read
    create = _check_out_dir(out_dir)
    record, raw, state = read_run(run_dir)
    new_audit = audit_config(record["config"].get("audit"), list(overrides))
    config = {**copy.deepcopy(record["config"]), "audit": new_audit}
    cfg = resolve(OmegaConf.create(config))
    if cfg.audit.attack == "none":
        raise ConfigError("audit: audit=none audits nothing; choose the audit: audit=loss|lira|rmia|canary "
                          "(audit=suggestions for task=jobs|channels)")
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    recorded = (record.get("data") or {}).get("fingerprint")
    if recorded is not None and recorded != data.corpus.fingerprint():
        raise ReauditError(f"{run_dir / RECORD_FILE}: data.fingerprint {recorded[:12]}… but the data its config "
                           f"builds now has {data.corpus.fingerprint()[:12]}…: the corpus changed (data.path?)")
    if cfg.audit.attack == "canary" and (data.manifest is None or not data.manifest.planted
                                         or not data.manifest.fresh):
        raise ConfigError("audit=canary needs a corpus with planted and fresh canaries: the run must have been "
                          "trained with data.n_canaries ≥ 1 and data.n_fresh_canaries ≥ 1 (data=synthetic)")
    model = data.new_model(cfg, seeds)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ReauditError(f"{run_dir / MODEL_FILE}: does not fit the model of the run's config: "
                           f"{str(exc).splitlines()[0]}") from None
    check_finite(model, cfg)
    members = trained_users(run_dir, record, cfg, data)
    ledger = PrivacyLedger(cfg.ledger.path) if cfg.ledger.path else None
    planned = planned_audit_spend(cfg, data)
    if ledger is not None and planned is not None:  # before training: the audit's own models only
        warning = ledger.check(planned[0], planned_epsilon=planned[1], total=cfg.ledger.total_epsilon,
                               on_exceed=cfg.ledger.on_exceed)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)

    outcome = Outcome(model=model, curve=record.get("curve") or [], privacy=record["privacy"],
                      status=record["status"], engine=record.get("engine", ""), trained_users=members)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _copy(run_dir / MODEL_FILE, out_dir / MODEL_FILE)
        if members is not None:
            write_trained_users(out_dir / TRAINED_USERS_FILE, members)
        if (run_dir / CANARIES_FILE).is_file():
            _copy(run_dir / CANARIES_FILE, out_dir / CANARIES_FILE)
        audit = audit_outcome(cfg, data, outcome, out_dir=out_dir, privacy=record["privacy"])
        new = copy.deepcopy(record)
        new["config"]["audit"] = new_audit
        new["model"] = {k: v for k, v in new["model"].items() if k != "trained_users_file"}
        if members is not None:
            new["model"]["trained_users_file"] = TRAINED_USERS_FILE
        new["audit"] = audit
        new["status"] = "failed" if audit["result"] == "dp_bug" else record["status"]
        new["timing"] = {"seconds": round(time.perf_counter() - started, 2),
                         "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                         "original": record.get("timing")}
        new["reaudit_of"] = {"run_dir": str(run_dir), "record_sha256": hashlib.sha256(raw).hexdigest()}
        spend = audit_spend(data, audit, what=f"re-audit of {run_dir} (audit={cfg.audit.attack})")
        if ledger is not None and spend is not None:  # what the audit trained; the model itself is not charged
            ledger.record(spend, run_dir=str(out_dir), epsilon=None)
        write_json(out_dir / RECORD_FILE, new)  # last: its presence means the re-audit finished
    except BaseException:
        _discard(out_dir, create)
        raise
    if new["status"] == "failed":
        raise ProbableDPBug(audit)
    return new
