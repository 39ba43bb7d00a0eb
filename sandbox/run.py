"""One run: data → partition (consent) → train → account → record. The only orchestrator.

Everything here is side effects at the edge: it prepares the data, calls the central or
federated trainer, and writes ``record.json``, ``model.pt`` and ``trained_users.npy`` (the
audits' members, for ``python -m sandbox.audit``) into the run directory
(Hydra's output directory). Randomness comes from one seed, split into independent streams.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

from sandbox.config import ConfigError, RunConfig
from sandbox.prepare import Prepared, Seeds, prepare, resolve_delta
from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import batches_per_epoch, plan_for
from sandbox.privacy.ledger import ALL_UNITS, ModelSpend, PrivacyLedger, Spend
from sandbox.record import (
    SCHEMA_VERSION, Outcome, model_fingerprint, privacy_section, versions, write_atomic, write_json, write_state_dict,
)
from sandbox.tasks import emoji
from sandbox.tasks.recommend import ranking_metrics
from sandbox.train.central import DPSGDSettings, TensorRows, train_dpsgd, train_nonprivate
from sandbox.train.progress import progress_bar
from sandbox.train.threads import single_threaded
from sandbox.tracking import check_backend, log_record

TRAINED_USERS_FILE = "trained_users.npy"  # beside model.pt: int64 corpus user indices whose data trained it


class _Curve:
    """Learning curve: held-out-user metrics and ε spent, at each epoch boundary and at the end."""

    def __init__(self, model, test: emoji.EmojiExamples, *, k: int, every: int, book):
        self.model, self.test, self.k, self.every, self.book = model, test, k, every, book
        self.eval_model = copy.deepcopy(model)  # evaluate a copy: Opacus hooks live on the original
        self.points: list[dict] = []

    def __call__(self, step: int, total: int, loss: float) -> None:
        if step % self.every == 0 or step == total:
            self.eval_model.load_state_dict(self.model.state_dict())
            metrics = emoji.evaluate(self.eval_model, self.test, k=self.k)
            eps = self.book.epsilon() if self.book is not None and self.book.steps else None
            self.points.append({"step": step, "epsilon": eps, "train_loss": loss, **metrics})


def train_central(cfg: RunConfig, data: Prepared, seeds: Seeds) -> Outcome:
    """Non-private training or example-level DP-SGD on the pooled training users' messages."""
    model = data.new_model(cfg, seeds)
    book = None
    if cfg.privacy.mechanism == "dpsgd":
        delta = resolve_delta(cfg, n=len(data.train), unit="example")
        book = PrivacyBook(unit="example", delta=delta, accountant=cfg.privacy.accountant)
    per_epoch = batches_per_epoch(n_examples=len(data.train), batch_size=cfg.train.batch_size)
    curve = _Curve(model, data.test, k=cfg.task.top_k, every=per_epoch, book=book)
    rows = TensorRows(data.train.tokens, data.train.labels)
    with progress_bar(cfg.progress, unit="steps") as show:
        def progress(step, total, loss):
            curve(step, total, loss)
            show(step, total, loss)

        if book is None:
            result = train_nonprivate(model, rows, cfg=cfg.train, generator=seeds.batches, progress=progress)
        else:
            dp = DPSGDSettings(clip_norm=cfg.privacy.clip_norm, plan=plan_for(cfg, n_examples=len(data.train)))
            result = train_dpsgd(model, rows, cfg=cfg.train, dp=dp, book=book,
                                 generator=seeds.dp_batches(cfg.privacy.noise_source),
                                 noise_generator=seeds.noise_generator(cfg.privacy.noise_source), progress=progress)
    if book is None:
        privacy = privacy_section(mechanism="none", unit="example", book=None, steps=result.steps)
    else:
        privacy = privacy_section(mechanism="dpsgd", unit="example", book=book, steps=result.steps,
                                  noise_multiplier=result.noise_multiplier, sample_rate=result.sample_rate,
                                  clip_norm=cfg.privacy.clip_norm, target_epsilon=cfg.privacy.target_epsilon,
                                  noise_source=cfg.privacy.noise_source)
    return Outcome(model=result.model, curve=curve.points, privacy=privacy, status="completed",
                   engine="central", trained_users=data.split.train_users)


def train_model(cfg: RunConfig, data: Prepared, seeds: Seeds, *, grid=None) -> Outcome:
    """Central or federated training as configured: the one harness runs, shadows and controls share."""
    if cfg.mode == "federated":
        from sandbox.federated.trainer import train_federated
        return train_federated(cfg, data, seeds, grid=grid)
    with single_threaded():  # bit-identical replays (see sandbox.train.threads)
        return train_central(cfg, data, seeds)


def check_finite(model, cfg: RunConfig) -> None:
    """A diverged model (inf/NaN parameters) is not a result: stop with the keys that usually cause it."""
    bad = [name for name, p in model.named_parameters() if not bool(p.detach().isfinite().all())]
    if bad:
        keys = ("federation.local_lr, federation.server_lr, federation.local_epochs" if cfg.mode == "federated"
                else "train.lr")
        raise ConfigError(f"training diverged: non-finite parameters in {', '.join(bad)}; lower {keys}")


def run(cfg: RunConfig, *, out_dir: Path, resolved_config: dict, grid=None) -> dict:
    """Train once and write ``record.json`` + ``model.pt`` into ``out_dir``; returns the record.

    ``grid``: the Flower Grid when this run is a Flower ServerApp (``federation.engine=deployment``).
    """
    started = time.perf_counter()
    check_backend(cfg.tracking.backend)  # a missing optional package stops the run before anything is written
    seeds = Seeds.from_seed(cfg.seed)
    data = prepare(cfg, seeds)
    ledger = PrivacyLedger(cfg.ledger.path) if cfg.ledger.path else None
    if ledger is not None:  # before training: refuse a run that could pass the data set's total
        warning = ledger.check(planned_spend(cfg, data), planned_epsilon=planned_epsilon(cfg, data),
                               total=cfg.ledger.total_epsilon, on_exceed=cfg.ledger.on_exceed)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    outcome = train_model(cfg, data, seeds, grid=grid)
    check_finite(outcome.model, cfg)
    metrics = emoji.evaluate(outcome.model, data.test, k=cfg.task.top_k)
    baseline = emoji.most_frequent_baseline(data.train, data.test, n_classes=len(data.classes),
                                            k=cfg.task.top_k)
    if data.rec is not None:  # recommenders: recall@k / NDCG@k beside the top-k hit rate above
        metrics["ranking"] = ranking_metrics(outcome.model, data.rec, k=cfg.task.top_k, resamples=cfg.audit.resamples,
                                             seed=cfg.seed)
    record = {
        "schema_version": SCHEMA_VERSION, "task": cfg.task.name, "mode": cfg.mode, "engine": outcome.engine,
        "seed": cfg.seed, "status": outcome.status, "config": resolved_config, "versions": versions(),
        "data": _data_section(data, outcome),
        "model": {"sha256": model_fingerprint(outcome.model.state_dict()), "file": "model.pt",
                  **({"trained_users_file": TRAINED_USERS_FILE} if outcome.trained_users is not None else {})},
        "privacy": outcome.privacy,
        "metrics": {**metrics, "baseline": baseline, "split": "held-out users"},
        "curve": outcome.curve,
        "timing": {"seconds": round(time.perf_counter() - started, 2), **outcome.timing,
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
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
        ledger.record(spend_of(cfg, data, record), run_dir=str(out_dir), epsilon=record["privacy"]["epsilon"])
    write_json(out_dir / "record.json", record)  # last: its presence means the run finished
    if cfg.tracking.backend != "none":
        record["tracking"] = log_record(record, backend=cfg.tracking.backend, run_dir=out_dir,
                                        directory=cfg.tracking.dir)
    if record["status"] == "failed":
        from sandbox.audit.harness import ProbableDPBug
        raise ProbableDPBug(record["audit"])
    return record


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
        from sandbox.audit.recsys import run_suggestions_audit
        return run_suggestions_audit(cfg, data, outcome, privacy=privacy)
    from sandbox.audit.harness import run_audit
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
    control = private and a.control  # a DP run's positive control trains without DP (with its own shadows)
    return (shadows if private else 0), (control or not private)


def planned_spend(cfg: RunConfig, data: Prepared) -> Spend:
    private = cfg.privacy.mechanism != "none"
    shadows, non_private = _audit_models(cfg, private)
    what = "training" + (f" + {shadows} shadow models" if shadows else "") + \
        (" + a non-private model" if non_private and private else "")
    unit = ALL_UNITS if non_private else _unit(cfg)
    return Spend(dataset=data.corpus.fingerprint(), unit=unit, private=not non_private, what=what)


def _unit(cfg: RunConfig) -> str:
    return cfg.federation.unit if cfg.privacy.mechanism == "dpfedavg" else "example"


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
    from sandbox.audit.harness import control_config

    a = cfg.audit
    if a.attack == "none":
        return None
    private = cfg.privacy.mechanism != "none"
    shadows = a.shadows if a.attack in ("lira", "rmia") else 0
    control = a.control and control_config(cfg)[2]  # trained apart from the run (with its own shadows)
    parts = ([f"{shadows} {'' if private else 'non-private '}shadow models"] if shadows else []) + \
        ([f"a non-private positive control{f' + its {shadows} shadows' if shadows else ''}"] if control else [])
    if not parts:
        return None
    what = "audit of a trained model: " + " + ".join(parts)
    dataset = data.corpus.fingerprint()
    if control or not private:
        return Spend(dataset=dataset, unit=ALL_UNITS, private=False, what=what), math.inf
    return (Spend(dataset=dataset, unit=_unit(cfg), private=True, what=what),
            _planned_model_epsilon(cfg, data) * shadows)


def audit_spend(data: Prepared, audit: dict, *, what: str) -> Spend | None:
    """The models an audit section says it trained (``audit.models_trained``) as one ledger spend; None if none."""
    models = _model_spends(audit.get("models_trained") or [])
    return Spend(dataset=data.corpus.fingerprint(), what=what, models=tuple(models)) if models else None


def _model_spends(trained: list[dict]) -> list[ModelSpend]:
    return [ModelSpend(what=m["what"], private=bool(m["private"]), unit=m.get("unit"),
                       delta=float(m.get("delta") or 0.0), events=tuple(m.get("events") or ())) for m in trained]


def _planned_model_epsilon(cfg: RunConfig, data: Prepared) -> float:
    """An upper bound on the ε one private model of ``cfg`` spends: its target (met by calibration or the
    stop rule), else the RDP ε (the ledger composes with RDP) of the run's plan (``sandbox.privacy.plan``)."""
    n_clients = None
    if cfg.privacy.mechanism == "dpfedavg":  # δ and adaptive clipping's count noise are over the clients
        from sandbox.federated.clients import partition_clients
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
        models = [ModelSpend(what="training", private=True, unit=privacy["unit"], delta=privacy["delta"],
                             events=tuple(privacy["events"]))]
    trained = (record.get("audit") or {}).get("models_trained")
    if trained is not None:
        models += _model_spends(trained)
    elif privacy["epsilon"] is not None:  # an audit that does not list its models: the planned ones
        shadows, non_private = _audit_models(cfg, True)
        if shadows:
            models.append(ModelSpend(what=f"{shadows} shadow models (the run's events)", private=True,
                                     unit=privacy["unit"], delta=privacy["delta"], events=tuple(privacy["events"]),
                                     times=shadows))
        if non_private:
            models.append(ModelSpend(what="a non-private model", private=False))
    return Spend(dataset=plan.dataset, what=plan.what, models=tuple(models))


def _data_section(data: Prepared, outcome: Outcome) -> dict:
    corpus = data.corpus
    return {
        "n_users": corpus.n_users, "n_workspaces": corpus.n_workspaces,
        "n_messages": corpus.n_messages, "n_examples": len(data.train), "n_test_examples": len(data.test),
        "n_train_users": len(data.split.train_users), "n_test_users": len(data.split.test_users),
        "n_opted_out_users": data.split.n_excluded_users,
        "n_opted_out_workspaces": int(corpus.workspace_opted_out.sum()),
        "n_canaries": len(data.manifest.planted) if data.manifest else 0,
        "n_classes": len(data.classes), "fingerprint": corpus.fingerprint(),
        **outcome.data,
    }

