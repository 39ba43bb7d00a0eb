"""One run: data → partition (consent) → train → account → record. The only orchestrator.

Everything here is side effects at the edge: it prepares the data, calls the central or
federated trainer, and writes ``record.json``, ``model.pt`` and ``trained_users.npy`` (the
audits' members, for ``python -m sandbox.audit``) into the run directory
(Hydra's output directory). Randomness comes from one seed, split into independent streams.
"""

from __future__ import annotations

import copy
import hashlib
import math
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from sandbox.audit.canary_clients import run_canary_client_audit
from sandbox.audit.harness import ProbableDPBug, control_config, run_audit
from sandbox.audit.recsys import run_suggestions_audit
from sandbox.audit.server_view import run_server_view_audit
from sandbox.config import FEDERATED_ATTACKS, ConfigError, RunConfig, resolve
from sandbox.config.overrides import audit_config, parse_overrides
from sandbox.data.normalize import TOKENIZER
from sandbox.federated.clients import partition_clients
from sandbox.prepare import Prepared, Seeds, prepare
from sandbox.privacy.ledger import ALL_UNITS, ModelSpend, PrivacyLedger, Spend
from sandbox.privacy.plan import plan_for
from sandbox.record import (
    SCHEMA_VERSION,
    Outcome,
    RecordError,
    RunRecord,
    load,
    model_fingerprint,
    save,
    versions,
    write_atomic,
    write_json,
    write_state_dict,
)
from sandbox.tracking import check_backend, log_record
from sandbox.training import check_finite, train_model

TRAINED_USERS_FILE = "trained_users.npy"  # beside model.pt: int64 corpus user indices whose data trained it


def run(cfg: RunConfig, *, out_dir: Path, resolved_config: dict, grid=None) -> dict:
    """Train once and write ``record.json`` + ``model.pt`` into ``out_dir``; returns the record.

    ``grid``: the Flower Grid when this run is a Flower ServerApp (``federation.engine=deployment``).
    """
    started = time.perf_counter()
    check_backend(cfg.tracking.backend)  # a missing optional package stops the run before anything is written
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    data_seconds = time.perf_counter() - started  # the corpus built (or read), split and featurised
    ledger = PrivacyLedger(cfg.ledger.path) if cfg.ledger.path else None
    if ledger is not None:  # before training: refuse a run that could pass the data set's total
        warning = ledger.check(
            planned_spend(cfg, data),
            planned_epsilon=planned_epsilon(cfg, data),
            total=cfg.ledger.total_epsilon,
            on_exceed=cfg.ledger.on_exceed,
        )
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    outcome = train_model(cfg, data, seeds, grid=grid)
    check_finite(outcome.model, cfg)
    metrics = cfg.task.evaluate(outcome.model, data.test)
    baseline = cfg.task.baseline(data.train, data.test, n_classes=len(data.classes))
    metrics.update(cfg.task.extra_metrics(outcome.model, data, resamples=cfg.audit.resamples, seed=cfg.seed))
    record = {
        "schema_version": SCHEMA_VERSION,
        "task": cfg.task.name,
        "mode": cfg.mode,
        "engine": outcome.engine,
        "seed": cfg.seed,
        "status": outcome.status,
        "config": resolved_config,
        "versions": versions(),
        "data": _data_section(data, outcome),
        "model": {
            "sha256": model_fingerprint(outcome.model.state_dict()),
            "file": "model.pt",
            **({"trained_users_file": TRAINED_USERS_FILE} if outcome.trained_users is not None else {}),
            "task_class": _qualname(type(cfg.task)),
            "model_class": _qualname(type(outcome.model)),
            "classes": [str(c) for c in data.classes],
            "tokenizer": TOKENIZER,
        },
        "privacy": outcome.privacy,
        "metrics": {**metrics, "baseline": baseline, "split": "held-out users"},
        "curve": outcome.curve,
        "timing": {
            "seconds": round(time.perf_counter() - started, 2),
            "data_seconds": round(data_seconds, 2),
            **outcome.timing,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    }
    _remove_stale_results(out_dir)  # an earlier run's record must never sit beside this run's model
    write_state_dict(out_dir / "model.pt", outcome.model.state_dict())
    if outcome.trained_users is not None:  # the audits' members: under secure sampling no re-run finds them again
        write_trained_users(out_dir / TRAINED_USERS_FILE, outcome.trained_users)
    if data.manifest is not None:  # for audits; training never reads it
        write_json(out_dir / "canaries.json", data.manifest.to_json())
    audit = audit_outcome(cfg, data, outcome, out_dir=out_dir, privacy=record["privacy"])
    if audit is not None:
        record["audit"] = audit
        record["timing"]["seconds"] = round(time.perf_counter() - started, 2)
        if audit["result"] == "dp_bug":
            record["status"] = "failed"
    if ledger is not None:  # what ran on the data set, audits' models included
        spend = spend_of(cfg, data, record)
        before = ledger.snapshot(spend.dataset, spend)
        ledger.record(spend, run_dir=str(out_dir), epsilon=record["privacy"]["epsilon"])
        record["ledger"] = {
            "path": str(ledger.path),
            "dataset": spend.dataset,
            "what": spend.what,
            "epsilon": ledger.change(spend, before),
            "note": "ε of the data set at each unit before and after this run (null: ∞, a non-private training)",
        }
    save(out_dir, RunRecord.from_json(record, origin="the run's record"))  # last: its presence means the run finished
    if cfg.tracking.backend != "none":
        record["tracking"] = log_record(
            record, backend=cfg.tracking.backend, run_dir=out_dir, directory=cfg.tracking.dir
        )
    if record["status"] == "failed":
        raise ProbableDPBug(record["audit"])
    return record


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def write_trained_users(path: Path, users) -> None:
    """``np.save`` of the users whose data took part (``Outcome.trained_users``), atomically."""
    users = np.asarray(users, dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
            np.save(f, users, allow_pickle=False)

    write_atomic(path, write)


def audit_outcome(cfg: RunConfig, data: Prepared, outcome: Outcome, *, out_dir: Path, privacy: dict) -> dict | None:
    """The record's ``audit`` section for ``cfg.audit`` on ``outcome.model`` (None for ``audit=none``).

    ``audit=suggestions``: ``sandbox.audit.recsys.run_suggestions_audit``; every other attack:
    ``sandbox.audit.harness.run_audit`` (which writes ``roc.png`` and ``audit_scores.npz`` into
    ``out_dir``). Both carry their positive control and DP-bug alarm (``result: dp_bug``). Used by
    :func:`run` and by the re-audit of a trained model (``python -m sandbox.audit``).
    """
    if cfg.audit.attack == "none":
        return None
    if cfg.audit.attack == "suggestions":
        return run_suggestions_audit(cfg, data, outcome, privacy=privacy)
    if cfg.audit.attack == "canary_clients":
        return run_canary_client_audit(cfg, data, outcome, out_dir=out_dir, privacy=privacy)
    if cfg.audit.attack == "server_view":
        return run_server_view_audit(cfg, data, outcome, out_dir=out_dir, privacy=privacy)
    return run_audit(cfg, data, outcome, out_dir=out_dir, privacy=privacy)


def _remove_stale_results(out_dir: Path) -> None:
    """Before this run writes its model: remove an earlier run's record, the claims judged on it and
    its members file, so a run that fails from here on leaves no record describing another model
    (``model.sha256``)."""
    for stale in [out_dir / "record.json", *out_dir.glob("claim_*.json"), out_dir / TRAINED_USERS_FILE]:
        stale.unlink(missing_ok=True)


def _audit_models(cfg: RunConfig, private: bool) -> tuple[int, bool]:
    """(private shadow models, whether a non-private model also trains on the data) of the audit."""
    a = cfg.audit
    shadows = a.shadows if a.attack in ("lira", "rmia") else 0
    if a.attack == "none":
        return 0, not private
    if a.attack == "server_view":  # its control is the run itself (or the same private config retrained)
        return 0, not private
    control = private and a.control  # a DP run's positive control trains without DP (with its own shadows)
    return (shadows if private else 0), (control or not private)


def planned_spend(cfg: RunConfig, data: Prepared) -> Spend:
    private = cfg.privacy.mechanism != "none"
    shadows, non_private = _audit_models(cfg, private)
    what = (
        "training"
        + (f" + {shadows} shadow models" if shadows else "")
        + (" + a non-private model" if non_private and private else "")
    )
    unit = ALL_UNITS if non_private else _unit(cfg)
    return Spend(dataset=data.corpus.fingerprint(), unit=unit, private=not non_private, what=what)


def _unit(cfg: RunConfig) -> str:
    return cfg.federation.unit if cfg.privacy.mechanism in ("dpfedavg", "dpftrl") else "example"


def planned_epsilon(cfg: RunConfig, data: Prepared) -> float:
    """An upper bound on the ε the run (and its audit's models) will spend: basic composition."""
    private = cfg.privacy.mechanism != "none"
    shadows, non_private = _audit_models(cfg, private)
    if non_private:
        return math.inf
    return _planned_model_epsilon(cfg, data) * (1 + shadows)


def planned_audit_spend(cfg: RunConfig, data: Prepared) -> tuple[Spend, float] | None:
    """What ``cfg.audit`` alone trains on the data set when it audits an already-trained model
    (``python -m sandbox.audit``): its shadows and its positive control, with an upper bound on their ε
    (∞ when any is not private); None when it trains nothing (the trained model is not counted)."""
    a = cfg.audit
    if a.attack == "none":
        return None
    private = cfg.privacy.mechanism != "none"
    shadows = a.shadows if a.attack in ("lira", "rmia") else 0
    control = a.control and control_config(cfg)[2]  # trained apart from the run (with its own shadows)
    parts = ([f"{shadows} {'' if private else 'non-private '}shadow models"] if shadows else []) + (
        [f"a non-private positive control{f' + its {shadows} shadows' if shadows else ''}"] if control else []
    )
    if not parts:
        return None
    what = "audit of a trained model: " + " + ".join(parts)
    dataset = data.corpus.fingerprint()
    if control or not private:
        return Spend(dataset=dataset, unit=ALL_UNITS, private=False, what=what), math.inf
    return (
        Spend(dataset=dataset, unit=_unit(cfg), private=True, what=what),
        _planned_model_epsilon(cfg, data) * shadows,
    )


def audit_spend(data: Prepared, audit: dict, *, what: str) -> Spend | None:
    """The models an audit section says it trained (``audit.models_trained``) as one ledger spend; None if none."""
    models = _model_spends(audit.get("models_trained") or [])
    return Spend(dataset=data.corpus.fingerprint(), what=what, models=tuple(models)) if models else None


def _model_spends(trained: list[dict]) -> list[ModelSpend]:
    return [
        ModelSpend(
            what=m["what"],
            private=bool(m["private"]),
            unit=m.get("unit"),
            delta=float(m.get("delta") or 0.0),
            events=tuple(m.get("events") or ()),
        )
        for m in trained
    ]


def _planned_model_epsilon(cfg: RunConfig, data: Prepared) -> float:
    """An upper bound on the ε one private model of ``cfg`` spends: its target (met by calibration or the
    stop rule), else the RDP ε (the ledger composes with RDP) of the run's plan (``sandbox.privacy.plan``)."""
    n_clients = None
    if cfg.privacy.mechanism in ("dpfedavg", "dpftrl"):  # δ and adaptive clipping's count noise are over the clients
        n_clients = len(partition_clients(data.corpus, data.train, unit=cfg.federation.unit))
    plan = plan_for(cfg, n_examples=len(data.train), n_clients=n_clients)
    if plan.target_epsilon is not None:
        return plan.target_epsilon
    return plan.epsilon(accountant="rdp")


def spend_of(cfg: RunConfig, data: Prepared, record: dict) -> Spend:
    """What the finished run spent: the run's own events, and every model its audit trained with the
    events *that model* ran (``audit.models_trained``: shadows resolve their own σ and δ)."""
    privacy = record["privacy"]
    plan = planned_spend(cfg, data)
    if privacy["epsilon"] is None:
        models = [ModelSpend(what="training", private=False)]
    else:
        models = [
            ModelSpend(
                what="training",
                private=True,
                unit=privacy["unit"],
                delta=privacy["delta"],
                events=tuple(privacy["events"]),
            )
        ]
    trained = (record.get("audit") or {}).get("models_trained")
    if trained is not None:
        models += _model_spends(trained)
    elif privacy["epsilon"] is not None:  # an audit that does not list its models: the planned ones
        shadows, non_private = _audit_models(cfg, True)
        if shadows:
            models.append(
                ModelSpend(
                    what=f"{shadows} shadow models (the run's events)",
                    private=True,
                    unit=privacy["unit"],
                    delta=privacy["delta"],
                    events=tuple(privacy["events"]),
                    times=shadows,
                )
            )
        if non_private:
            models.append(ModelSpend(what="a non-private model", private=False))
    return Spend(dataset=plan.dataset, what=plan.what, models=tuple(models))


def _data_section(data: Prepared, outcome: Outcome) -> dict:
    corpus = data.corpus
    return {
        "n_users": corpus.n_users,
        "n_workspaces": corpus.n_workspaces,
        "n_messages": corpus.n_messages,
        "n_examples": len(data.train),
        "n_test_examples": len(data.test),
        "n_train_users": len(data.split.train_users),
        "n_test_users": len(data.split.test_users),
        "n_opted_out_users": data.split.n_excluded_users,
        "n_opted_out_workspaces": int(corpus.workspace_opted_out.sum()),
        "n_canaries": len(data.manifest.planted) if data.manifest else 0,
        "n_classes": len(data.classes),
        "fingerprint": corpus.fingerprint(),
        **outcome.data,
    }


# == Re-audit a trained run ===========================================================================
# ``python -m sandbox.audit RUN_DIR [OUT_DIR] [audit=NAME] [audit.KEY=VALUE ...]``
# A run holds one audit, and a promise such as "cannot learn, memorize or reproduce" needs
# several (LiRA, the canary audit). Training again with the same config and seed gives the same
# model only without DP: the DP noise and the mechanisms' sampling come from the OS CSPRNG
# (``privacy.noise_source=secure``). So the model is trained once and audited again from its
# run directory:
#
#     python -m sandbox.audit RUN_DIR OUT_DIR [audit=NAME] [audit.KEY=VALUE ...]
#
# * **What is read** (refused, ``ReauditError``, when missing or wrong; the message names the
#   file): ``RUN_DIR/record.json`` of a ``completed`` or ``stopped_budget`` run; ``model.pt``,
#   whose fingerprint (``sandbox.record.model_fingerprint``) must be the record's
#   ``model.sha256``; and the audit's members, ``trained_users.npy`` (the users whose data took
#   part). A central run's members are its training users, so a central run without the file
#   (older runs) is re-audited with them; a federated run's members are the users whose client
#   was sampled, which no re-run can find again, so a federated run without the file is refused
#   (``audit=suggestions`` does not need them: its members are the training users).
# * **The config** is the record's own (``record["config"]``, the resolved one) with only the
#   audit changed: ``audit=NAME`` takes the group ``conf/audit/NAME.yaml`` (Hydra's compose API),
#   ``audit.KEY=VALUE`` changes one key of it (or of the run's own audit config without
#   ``audit=NAME``). Any other key is refused (``ConfigError`` naming it): the model's config is
#   what trained it. The data are rebuilt from the config (deterministic from the seeds, and
#   checked against the record's ``data.fingerprint``).
# * **The ledger** (``cfg.ledger.path`` of the run's config): the audit's planned models (shadows,
#   a positive control) are checked against ``ledger.total_epsilon`` before anything trains, and
#   the models it trained (``audit.models_trained``) are recorded as one entry. The trained model
#   is not charged again.
# * **What is written** into OUT_DIR (new, or empty): ``model.pt`` (a copy: ``model.sha256``
#   still matches), ``trained_users.npy``, ``canaries.json`` when the run has one, the audit's own
#   files (``roc.png``, ``audit_scores.npz``), and last, atomically, ``record.json``: the run's
#   record with ``audit`` and ``config.audit`` replaced, ``status`` recomputed (``failed`` when the
#   audit finds a probable DP bug: ``ProbableDPBug`` is raised after the record is written),
#   ``timing`` of the re-audit (the run's under ``timing.original``) and ``reaudit_of: {run_dir,
#   record_sha256}`` (sha256 of the run's record.json bytes). A re-audit that stops with an error
#   leaves OUT_DIR as it found it.
#
# The records of RUN_DIR and OUT_DIR (and of other re-audits) then carry one ``model.sha256``
# and are judged together: ``python -m sandbox.claim CLAIM RUN_DIR OUT_DIR``.

RECORD_FILE, MODEL_FILE, CANARIES_FILE = "record.json", "model.pt", "canaries.json"
REAUDITABLE = ("completed", "stopped_budget")
AUDITS_DIR = "audits"  # RUN_DIR/audits/NAME/: re-audits kept beside the run they audit


class ReauditError(ValueError):
    """RUN_DIR or OUT_DIR cannot be used; the message names the file and why."""


# -- the run directory --------------------------------------------------------------------------------
def read_run(run_dir: Path) -> tuple[dict, bytes, dict]:
    """(record, the record file's bytes, model.pt's state dict), refused unless the record is of that model."""
    record_path, model_path = run_dir / RECORD_FILE, run_dir / MODEL_FILE
    if not record_path.is_file():
        raise ReauditError(
            f"{record_path}: missing: not the directory of a finished run (a run writes "
            "record.json last, when it completes)"
        )
    raw = record_path.read_bytes()
    try:
        record = load(run_dir).to_json()
    except RecordError as exc:
        raise ReauditError(str(exc)) from None
    status = record.get("status")
    if status not in REAUDITABLE:
        raise ReauditError(
            f"{record_path}: status: {status!r}: only the model of a completed run "
            f"({' or '.join(REAUDITABLE)}) is re-audited"
        )
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
        raise ReauditError(
            f"{model_path}: its fingerprint {found[:12]}… is not the model.sha256 {sha[:12]}… of "
            f"{record_path}: the record is not of this model (replaced or retrained?)"
        )
    return record, raw, state


def trained_users(run_dir: Path, record: dict, cfg: RunConfig, data) -> np.ndarray | None:
    """The audit's members: RUN_DIR/trained_users.npy, or a central run's training users; None when the
    audit needs none (``audit=suggestions`` of a federated run without the file)."""
    path = run_dir / record["model"].get("trained_users_file", TRAINED_USERS_FILE)
    train_users = np.asarray(data.split.train_users)
    if not path.is_file():
        if cfg.mode == "central":  # every training user trained
            return train_users.astype(np.int64)
        if cfg.audit.attack == "suggestions":
            return None
        raise ReauditError(
            f"{path}: missing: a federated run's members are the users whose client was sampled, "
            "and sampling is not reproducible (privacy.noise_source=secure draws it from the OS "
            "CSPRNG), so runs save them there; this run predates that. Train it again (its audits "
            "then come from python -m sandbox.audit on the new run directory)"
        )
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
def default_audit_dir(run_dir: Path, attack: str) -> Path:
    """``RUN_DIR/audits/ATTACK`` (``ATTACK-2``, ``-3``, … when taken): where a re-audit goes by default."""
    base = Path(run_dir) / AUDITS_DIR / attack
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{attack}-{n}")
    return candidate


def reaudit(run_dir: str | Path, out_dir: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """Audit RUN_DIR's model with the audit ``overrides`` into OUT_DIR (default ``RUN_DIR/audits/ATTACK``,
    beside the run: its record.json and model.pt are never rewritten); returns the new record. Raises
    ``ConfigError`` / ``ReauditError`` (nothing written), ``LedgerError``, and ``ProbableDPBug`` after
    writing a ``failed`` record."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    parse_overrides(list(overrides))  # a key outside audit is refused before anything is read
    if out_dir is not None:
        _check_out_dir(Path(out_dir))
    record, raw, state = read_run(run_dir)
    new_audit = audit_config(record["config"].get("audit"), list(overrides))
    config = {**copy.deepcopy(record["config"]), "audit": new_audit}
    cfg = resolve(OmegaConf.create(config))
    if cfg.audit.attack == "none":
        raise ConfigError(
            "audit: audit=none audits nothing; choose the audit: audit=loss|lira|rmia|canary "
            "(audit=suggestions for task=jobs|channels)"
        )
    if cfg.audit.attack in FEDERATED_ATTACKS:
        raise ConfigError(
            f"audit: audit={cfg.audit.attack} watches federated training as it runs and cannot audit a "
            f"trained model; train again with audit={cfg.audit.attack} (python -m sandbox mode=federated "
            f"audit={cfg.audit.attack} ...)"
        )
    out_dir = Path(out_dir) if out_dir is not None else default_audit_dir(run_dir, cfg.audit.attack)
    create = _check_out_dir(out_dir)
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    recorded = (record.get("data") or {}).get("fingerprint")
    if recorded is not None and recorded != data.corpus.fingerprint():
        raise ReauditError(
            f"{run_dir / RECORD_FILE}: data.fingerprint {recorded[:12]}… but the data its config "
            f"builds now has {data.corpus.fingerprint()[:12]}…: the corpus changed (data.path?)"
        )
    if cfg.audit.attack == "canary" and (data.manifest is None or not data.manifest.planted or not data.manifest.fresh):
        raise ConfigError(
            "audit=canary needs a corpus with planted and fresh canaries: the run must have been "
            "trained with data.n_canaries ≥ 1 and data.n_fresh_canaries ≥ 1 (data=synthetic)"
        )
    model = data.new_model(cfg, seeds)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ReauditError(
            f"{run_dir / MODEL_FILE}: does not fit the model of the run's config: {str(exc).splitlines()[0]}"
        ) from None
    check_finite(model, cfg)
    members = trained_users(run_dir, record, cfg, data)
    ledger = PrivacyLedger(cfg.ledger.path) if cfg.ledger.path else None
    planned = planned_audit_spend(cfg, data)
    if ledger is not None and planned is not None:  # before training: the audit's own models only
        warning = ledger.check(
            planned[0], planned_epsilon=planned[1], total=cfg.ledger.total_epsilon, on_exceed=cfg.ledger.on_exceed
        )
        if warning:
            print(f"warning: {warning}", file=sys.stderr)

    outcome = Outcome(
        model=model,
        curve=record.get("curve") or [],
        privacy=record["privacy"],
        status=record["status"],
        engine=record.get("engine", ""),
        trained_users=members,
    )
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
        new["timing"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "original": record.get("timing"),
        }
        new["reaudit_of"] = {
            "run_dir": str(run_dir),
            "record_sha256": hashlib.sha256(raw).hexdigest(),
            "out_dir": str(out_dir),
        }
        spend = audit_spend(data, audit, what=f"re-audit of {run_dir} (audit={cfg.audit.attack})")
        if ledger is not None and spend is not None:  # what the audit trained; the model itself is not charged
            ledger.record(spend, run_dir=str(out_dir), epsilon=None)
        save(out_dir, RunRecord.from_json(new, origin="the re-audit's record"))  # last: the re-audit finished
    except BaseException:
        _discard(out_dir, create)
        raise
    if new["status"] == "failed":
        raise ProbableDPBug(audit)
    return new
