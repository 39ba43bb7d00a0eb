"""Typed configuration at the boundary: Hydra's ``DictConfig`` → frozen dataclasses, validated once.

Only the entry point sees ``DictConfig``; everything below it takes these dataclasses.
Errors name the config key (``privacy.delta``), say what is allowed, and are raised as
``ConfigError`` so the CLI prints them without a traceback.
"""

from __future__ import annotations

import enum
import math
from dataclasses import fields, is_dataclass, replace
from typing import get_type_hints

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from sandbox.config.schema import (  # noqa: F401  (the public names of sandbox.config)
    ACCOUNTANTS,
    ATTACKS,
    ENGINES,
    MECHANISMS,
    MODES,
    NOISE_SOURCES,
    RECOMMEND_TASKS,
    Accountant,
    Attack,
    AuditConfig,
    AuditLevel,
    ClientUnit,
    Clipping,
    ConfigError,
    DataConfig,
    EmojiTaskConfig,
    Engine,
    FederationConfig,
    JobsConfig,
    LedgerConfig,
    LocalConfig,
    Mechanism,
    Mode,
    NoiseSource,
    OnExceed,
    PrivacyConfig,
    RecommendTaskConfig,
    RunConfig,
    SandboxConfig,
    ServerOptimizer,
    SyntheticConfig,
    Threat,
    TrackingBackend,
    TrackingConfig,
    TrainConfig,
)
from sandbox.config.store import CONF_DIR, register  # noqa: F401

register()  # the schemas the YAML files' defaults lists name: whoever composes sandbox/conf needs them


def _q(value) -> str:
    """``repr`` of a config value, an Enum member as its plain string."""
    return repr(value.value if isinstance(value, enum.Enum) else value)


# The message of a value outside a choice, by key: resolve's checks and a refused composition
# (OmegaConf checks the Enum fields first) say the same thing.
CHOICE_RULES = {
    "mode": lambda v: f"must be one of {MODES}, got {_q(v)}",
    "privacy.mechanism": lambda v: f"must be one of {MECHANISMS}, got {_q(v)}",
    "privacy.noise_source": lambda v: (
        f"must be one of {NOISE_SOURCES} (secure: DP noise from the OS CSPRNG, never recorded; seeded: "
        f"replayed from the run's seed, research only, not private against whoever holds the record), "
        f"got {_q(v)}"
    ),
    "privacy.accountant": lambda v: f"must be one of {ACCOUNTANTS}, got {_q(v)}",
    "privacy.clipping": lambda v: f"must be 'fixed' or 'adaptive', got {_q(v)}",
    "audit.attack": lambda v: f"must be one of {ATTACKS}, got {_q(v)}",
    "audit.level": lambda v: f"must be 'user' or 'example', got {_q(v)}",
    "audit.threat": lambda v: f"must be whitebox, scores or topk, got {_q(v)}",
    "federation.engine": lambda v: f"must be one of {ENGINES}, got {_q(v)}",
    "federation.unit": lambda v: f"must be 'user' or 'workspace', got {_q(v)}",
    "federation.server_optimizer": lambda v: f"must be fedavg, fedavgm or fedadam, got {_q(v)}",
    "tracking.backend": lambda v: f"must be none, tensorboard or mlflow, got {_q(v)}",
    "ledger.on_exceed": lambda v: f"must be 'refuse' or 'warn', got {_q(v)}",
}


def explain(exc: BaseException) -> ConfigError:
    """A ``ConfigError`` naming the key, for an error raised while Hydra composed the config.

    OmegaConf's errors (a key the schema does not have, a value of the wrong type or outside an
    Enum) carry the key; Hydra wraps them (``ConfigCompositionError``: an override or a file).
    """
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, OverrideParseException):
        return ConfigError(f"{exc.override}: not a valid override: {' '.join(str(exc.message).split())}")
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, name = str(exc.missing_cfg_file).rpartition("/")
        return ConfigError(f"{group}: no option {name!r} (known: {', '.join(sorted(exc.options))})")
    chain, cause = [], exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
            key = str(error.full_key)
            text = str(error.msg or error).splitlines()[0]
            if key in CHOICE_RULES and text.startswith("Invalid value"):
                return ConfigError(f"{key}: {CHOICE_RULES[key](error.value)}")
            return ConfigError(f"{key}: {text}")
    text = " ".join(str(exc).split("\n\n")[0].split())
    origin = next((str(e) for e in chain if isinstance(e, OmegaConfBaseException)), "")
    return ConfigError(f"{text}{': ' + origin.splitlines()[0] if origin and origin not in text else ''}")


def _typed(cls, node, key: str):
    """Build dataclass ``cls`` from a config node; unknown or mistyped keys name ``key.field``."""
    known = {f.name for f in fields(cls)}
    values = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except Exception as exc:  # OmegaConf's ValidationError names the field; keep its text
        rule = CHOICE_RULES.get(f"{key}.{getattr(exc, 'full_key', None)}")
        if rule is not None and str(getattr(exc, "msg", "")).startswith("Invalid value"):
            raise ConfigError(f"{key}.{exc.full_key}: {rule(values.get(exc.full_key))}") from None
        message = str(getattr(exc, "msg", exc)).splitlines()[0].replace(f"{cls.__name__}.", f"{key}.")
        if getattr(exc, "full_key", None):
            message = f"{key}.{exc.full_key}: {message}"
        raise ConfigError(message if message.startswith(f"{key}.") else f"{key}: {message}") from None


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _validate_privacy(p: PrivacyConfig) -> None:
    _check(p.mechanism in MECHANISMS, "privacy.mechanism", CHOICE_RULES["privacy.mechanism"](p.mechanism))
    _check(
        p.noise_source in NOISE_SOURCES, "privacy.noise_source", CHOICE_RULES["privacy.noise_source"](p.noise_source)
    )
    if p.mechanism == "none":
        return
    _check(p.accountant in ACCOUNTANTS, "privacy.accountant", CHOICE_RULES["privacy.accountant"](p.accountant))
    if p.mechanism in ("dpsgd", "client_dpsgd"):
        _check(
            p.unit == "example",
            "privacy.unit",
            "DP-SGD protects one example (message); "
            "user- or workspace-level DP is federated (mode=federated privacy=dpfedavg)",
        )
        _check(
            (p.noise_multiplier is None) != (p.target_epsilon is None),
            "privacy",
            "set exactly one of privacy.noise_multiplier and privacy.target_epsilon",
        )
        _check(
            0 < p.local_sample_rate <= 1, "privacy.local_sample_rate", f"must be in (0, 1], got {p.local_sample_rate}"
        )
    elif p.mechanism == "dpftrl":
        _validate_dpftrl(p)
    else:
        _check(
            p.unit in ("user", "workspace"),
            "privacy.unit",
            f"DP-FedAvg protects a whole client: 'user' or 'workspace', got {p.unit!r}",
        )
        _check(
            p.noise_multiplier is not None or p.target_epsilon is not None,
            "privacy",
            "set privacy.noise_multiplier, privacy.target_epsilon, or both (σ given + target: "
            "training stops before the next round would exceed the target)",
        )
        _check(p.clipping in ("fixed", "adaptive"), "privacy.clipping", CHOICE_RULES["privacy.clipping"](p.clipping))
        _check(
            p.clipping_site in ("client", "server"),
            "privacy.clipping_site",
            f"must be 'client' or 'server', got {p.clipping_site!r}",
        )
        _check(0 < p.target_quantile < 1, "privacy.target_quantile", f"must be in (0, 1), got {p.target_quantile}")
    if p.noise_multiplier is not None:
        _check(
            math.isfinite(p.noise_multiplier) and p.noise_multiplier > 0,
            "privacy.noise_multiplier",
            f"must be > 0, got {p.noise_multiplier}",
        )
    if p.target_epsilon is not None:
        _check(
            math.isfinite(p.target_epsilon) and p.target_epsilon > 0,
            "privacy.target_epsilon",
            f"must be > 0, got {p.target_epsilon}",
        )
    if p.delta is not None:
        _check(0 < p.delta < 1, "privacy.delta", f"must be in (0, 1), got {p.delta}")
    _check(p.clip_norm > 0, "privacy.clip_norm", f"must be > 0, got {p.clip_norm}")


def _validate_dpftrl(p: PrivacyConfig) -> None:
    """DP-FTRL with tree aggregation and restarts: refuse what dp-accounting's tree RDP does not cover."""
    _check(
        p.unit in ("user", "workspace"),
        "privacy.unit",
        f"DP-FTRL protects a whole client: 'user' or 'workspace', got {p.unit!r}",
    )
    _check(
        (p.noise_multiplier is None) != (p.target_epsilon is None),
        "privacy",
        "set exactly one of privacy.noise_multiplier and privacy.target_epsilon (DP-FTRL has no stop rule)",
    )
    _check(
        p.accountant == "rdp",
        "privacy.accountant",
        f"DP-FTRL's tree aggregation is accounted by dp-accounting's RDP accountant only, got {p.accountant!r}: "
        "use privacy.accountant=rdp",
    )
    _check(
        p.clients_per_round is not None and p.clients_per_round >= 1,
        "privacy.clients_per_round",
        f"DP-FTRL needs the fixed number of clients per round (an integer ≥ 1), got {p.clients_per_round!r}",
    )
    _check(
        p.rounds_per_epoch is None or p.rounds_per_epoch >= 1,
        "privacy.rounds_per_epoch",
        f"must be an integer ≥ 1 or null (⌊clients / clients_per_round⌋), got {p.rounds_per_epoch!r}",
    )
    _check(
        p.participation in ("shuffled", "cyclic"),
        "privacy.participation",
        f"must be 'shuffled' or 'cyclic', got {p.participation!r}",
    )
    _check(
        p.tree_restart == "epoch",
        "privacy.tree_restart",
        f"only 'epoch' (a new tree every privacy.rounds_per_epoch rounds) is accounted, got {p.tree_restart!r}: "
        "without restarts aligned to the epochs a user takes part in one tree more than once, which "
        "dp-accounting's tree-aggregation RDP does not cover (one tree over all rounds: rounds_per_epoch ≥ rounds)",
    )
    _check(
        p.max_participations_per_tree == 1,
        "privacy.max_participations_per_tree",
        f"must be 1, got {p.max_participations_per_tree!r}: dp-accounting's tree-aggregation RDP "
        "(SingleEpochTreeAggregationDpEvent) covers each user at most once per tree; more is refused, "
        "not approximated",
    )
    _check(p.clipping == "fixed", "privacy.clipping", "DP-FTRL runs with a fixed clip norm (adaptive: DP-FedAvg only)")


def _validate_train(t: TrainConfig) -> None:
    _check(t.epochs > 0, "train.epochs", f"must be > 0, got {t.epochs}")
    _check(t.batch_size >= 1, "train.batch_size", f"must be ≥ 1, got {t.batch_size}")
    _check(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    _check(t.optimizer in ("adam", "sgd"), "train.optimizer", f"must be 'adam' or 'sgd', got {t.optimizer!r}")


FEDERATED_ATTACKS = ("canary_clients", "server_view")  # audits that run inside the federated round loop


def _validate_audit(a: AuditConfig) -> None:
    _check(a.attack in ATTACKS, "audit.attack", CHOICE_RULES["audit.attack"](a.attack))
    _check(a.level in ("user", "example"), "audit.level", CHOICE_RULES["audit.level"](a.level))
    _check(a.threat in ("whitebox", "scores", "topk"), "audit.threat", CHOICE_RULES["audit.threat"](a.threat))
    _check(a.topk >= 1, "audit.topk", f"must be ≥ 1, got {a.topk}")
    if a.attack in ("lira", "rmia"):
        _check(
            a.shadows >= 2 and a.shadows % 2 == 0,
            "audit.shadows",
            f"must be an even number ≥ 2 (each user IN for half of them), got {a.shadows}",
        )
    _check(0 < a.threshold_fpr < 1, "audit.threshold_fpr", f"must be in (0, 1), got {a.threshold_fpr}")
    _check(0 < a.alpha < 1, "audit.alpha", f"must be in (0, 1), got {a.alpha}")
    _check(0 < a.confidence < 1, "audit.confidence", f"must be in (0, 1), got {a.confidence}")
    _check(a.resamples >= 1, "audit.resamples", f"must be ≥ 1, got {a.resamples}")
    _check(a.rmia_gamma > 0, "audit.rmia_gamma", f"must be > 0, got {a.rmia_gamma}")
    _check(0 <= a.rmia_offline_a <= 1, "audit.rmia_offline_a", f"must be in [0, 1], got {a.rmia_offline_a}")
    _check(a.workers >= 1, "audit.workers", f"must be ≥ 1, got {a.workers}")
    _check(
        a.control_on in ("same", "central"), "audit.control_on", f"must be 'same' or 'central', got {a.control_on!r}"
    )
    fractions = list(a.one_run_guess_fractions)
    _check(
        len(fractions) >= 1 and all(0 < f <= 1 for f in fractions),
        "audit.one_run_guess_fractions",
        f"must be a non-empty list of shares in (0, 1], got {fractions}",
    )
    _check(0 <= a.control_tpr_floor < 1, "audit.control_tpr_floor", f"must be in [0, 1), got {a.control_tpr_floor}")
    if a.attack == "canary_clients":
        _check(a.canary_clients >= 2, "audit.canary_clients", f"must be ≥ 2, got {a.canary_clients}")


def _task(node):
    """The run's task: the class ``task._target_`` names, built from the other ``task.*`` keys (checked
    against its fields: an unknown or mistyped key names ``task.KEY``; a nested dataclass field, such as
    ``task.jobs``, names ``task.jobs.KEY``). The class implements ``sandbox.tasks.base.Task``."""
    values = dict(OmegaConf.to_container(node, resolve=True)) if node is not None else {}
    target = values.pop("_target_", None)
    if not target:
        raise ConfigError(
            "task._target_: missing: the task's class, e.g. sandbox.tasks.emoji.EmojiTask "
            "(task=emoji|jobs|channels, or task._target_=my_pkg.MyTask)"
        )
    try:
        cls = get_class(str(target))
    except Exception as exc:  # Hydra's ImportError text names the module or the attribute
        raise ConfigError(f"task._target_: cannot import {target!r}: {str(exc).splitlines()[0]}") from None
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise ConfigError(f"task._target_: {target} must be a dataclass whose fields are the task's keys")
    hints = get_type_hints(cls)
    nested = {}
    for f in fields(cls):
        kind = hints.get(f.name)
        if isinstance(kind, type) and is_dataclass(kind) and isinstance(values.get(f.name), dict):
            try:  # a nested frozen dataclass: typed on its own, errors name task.FIELD.KEY
                nested[f.name] = _typed(kind, OmegaConf.create(values.pop(f.name)), f"task.{f.name}")
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(f"{kind.__name__}.", f"task.{f.name}.")) from None
    task = _typed(cls, OmegaConf.create(values), "task")
    return replace(task, **nested) if nested else task


def build_task(values: dict):
    """The task of a recorded config's ``task`` section (``_target_`` and its keys), checked as
    ``resolve`` checks it (``sandbox.serve.load`` rebuilds a trained model's task with it)."""
    return _task(OmegaConf.create(dict(values)))


def _validate_federation(f: FederationConfig, privacy: PrivacyConfig) -> None:
    _check(f.engine in ENGINES, "federation.engine", CHOICE_RULES["federation.engine"](f.engine))
    _check(f.unit in ("user", "workspace"), "federation.unit", CHOICE_RULES["federation.unit"](f.unit))
    _check(0 < f.sample_rate <= 1, "federation.sample_rate", f"must be in (0, 1], got {f.sample_rate}")
    _check(f.rounds >= 1, "federation.rounds", f"must be ≥ 1, got {f.rounds}")
    _check(f.local_epochs >= 1, "federation.local_epochs", f"must be ≥ 1, got {f.local_epochs}")
    _check(f.local_batch_size >= 1, "federation.local_batch_size", f"must be ≥ 1, got {f.local_batch_size}")
    _check(
        f.client_batch >= 0, "federation.client_batch", f"must be ≥ 0 (0 = one client at a time), got {f.client_batch}"
    )
    _check(
        f.server_optimizer in ("fedavg", "fedavgm", "fedadam"),
        "federation.server_optimizer",
        CHOICE_RULES["federation.server_optimizer"](f.server_optimizer),
    )
    _check(
        privacy.mechanism != "dpsgd",
        "privacy",
        "privacy=dpsgd is central example-level DP-SGD; "
        "federated training uses privacy=dpfedavg (user level), privacy=client_dpsgd (example level, "
        "inside each client) or privacy=none",
    )
    if privacy.mechanism == "dpftrl":
        _check(
            f.server_optimizer in ("fedavg", "fedavgm"),
            "federation.server_optimizer",
            "DP-FTRL's server step is FTRL on the noisy prefix sum: fedavg (no momentum) or fedavgm "
            f"(DP-FTRLM, momentum federation.server_momentum), got {_q(f.server_optimizer)}",
        )
    if privacy.mechanism in ("dpfedavg", "dpftrl"):
        _check(
            privacy.unit == f.unit,
            "privacy.unit",
            f"is {_q(privacy.unit)} but clients are {_q(f.unit)}s (federation.unit): the DP unit is the client",
        )
    if not f.secagg:
        return
    # secure aggregation (Flower's SecAgg+, sandbox.federated.flower_secagg): what it can and cannot run
    _check(
        f.engine in ("flower", "deployment"),
        "federation.secagg",
        "secure aggregation runs in Flower: federation.engine=flower|deployment",
    )
    if privacy.mechanism in ("dpfedavg", "dpftrl"):
        _check(
            privacy.clipping_site == "client",
            "federation.secagg",
            "needs privacy.clipping_site=client under DP-FedAvg: the server never sees an update to clip",
        )
        if f.secagg_clipping_range is not None:
            _check(
                privacy.clipping == "fixed",
                "federation.secagg_clipping_range",
                "leave it null under adaptive clipping: the range follows the round's clip norm",
            )
            _check(
                f.secagg_clipping_range >= privacy.clip_norm,
                "federation.secagg_clipping_range",
                f"{f.secagg_clipping_range} < privacy.clip_norm {privacy.clip_norm} would clip clipped updates' "
                "coordinates (leave it null: the clip norm)",
            )
    else:
        _check(
            f.secagg_clipping_range is not None and f.secagg_clipping_range > 0,
            "federation.secagg_clipping_range",
            "required without DP-FedAvg (> 0): no clip norm bounds an update's coordinates; "
            "clients whose update exceeds it are counted in the record (privacy.secure_aggregation)",
        )
    shares, threshold = f.secagg_num_shares, f.secagg_reconstruction_threshold
    _check(
        0 < shares <= 1 or (shares >= 3 and float(shares).is_integer()),
        "federation.secagg_num_shares",
        f"must be an integer ≥ 3 or a fraction in (0, 1] of the round's clients, got {shares}",
    )
    _check(
        0 < threshold <= 1 or (threshold >= 2 and float(threshold).is_integer()),
        "federation.secagg_reconstruction_threshold",
        f"must be an integer ≥ 2 or a fraction in (0, 1] of the shares, got {threshold}",
    )
    _check(
        not (shares > 1 and threshold > 1 and threshold >= shares),
        "federation.secagg_reconstruction_threshold",
        f"must be < federation.secagg_num_shares ({shares}), got {threshold}",
    )
    q, m = f.secagg_quantization_range, f.secagg_modulus_range
    _check(q >= 2, "federation.secagg_quantization_range", f"must be ≥ 2, got {q}")
    _check(
        q < m <= 2**32 and m & (m - 1) == 0,
        "federation.secagg_modulus_range",
        f"must be a power of 2 in (federation.secagg_quantization_range, 2**32], got {m}",
    )


def _data_config(node) -> DataConfig:
    values = dict(OmegaConf.to_container(node, resolve=True))
    source = values.pop("source", "synthetic")
    path = values.pop("path", None)
    manifest = values.pop("manifest", None)
    _check(source in ("synthetic", "files"), "data.source", f"must be 'synthetic' or 'files', got {source!r}")
    if source == "files":
        _check(bool(path), "data.path", "a corpus directory is required with data=files")
        _check(not values, f"data.{next(iter(values), '')}", "unknown key for data=files")
        return DataConfig(source=source, path=str(path), manifest=None if manifest is None else str(manifest))
    _check(manifest is None, "data.manifest", "only with data=files (a synthetic corpus draws its own canaries)")
    return DataConfig(source=source, synthetic=_typed(SyntheticConfig, OmegaConf.create(values), "data"))


def resolve(cfg: DictConfig) -> RunConfig:
    """Validate the composed Hydra config and return the typed run config."""
    known = {f.name for f in fields(SandboxConfig)}
    unknown = sorted(set(cfg) - known - {"hydra"})
    _check(not unknown, next(iter(unknown), ""), f"unknown key (known: {', '.join(sorted(known))})")
    mode = cfg.get("mode", "central")
    _check(mode in MODES, "mode", CHOICE_RULES["mode"](mode))
    mode = Mode(mode)
    privacy = _typed(PrivacyConfig, cfg.privacy, "privacy")
    federation = _typed(FederationConfig, cfg.get("federation"), "federation")
    train = _typed(TrainConfig, cfg.train, "train")
    audit = _typed(AuditConfig, cfg.get("audit"), "audit")
    ledger = _typed(LedgerConfig, cfg.get("ledger"), "ledger")
    tracking = _typed(TrackingConfig, cfg.get("tracking"), "tracking")
    _check(
        tracking.backend in ("none", "tensorboard", "mlflow"),
        "tracking.backend",
        CHOICE_RULES["tracking.backend"](tracking.backend),
    )
    _check(
        ledger.on_exceed in ("refuse", "warn"), "ledger.on_exceed", CHOICE_RULES["ledger.on_exceed"](ledger.on_exceed)
    )
    _check(
        ledger.total_epsilon is None or ledger.total_epsilon > 0,
        "ledger.total_epsilon",
        f"must be > 0 (or null: track only), got {ledger.total_epsilon}",
    )
    _validate_audit(audit)
    _validate_privacy(privacy)
    _validate_train(train)
    if mode == "federated":
        _validate_federation(federation, privacy)
    else:
        _check(
            privacy.mechanism not in ("dpfedavg", "dpftrl", "client_dpsgd"),
            "privacy",
            f"privacy={privacy.mechanism} is federated: add mode=federated",
        )
        _check(
            audit.attack not in FEDERATED_ATTACKS,
            "audit.attack",
            f"audit={audit.attack} audits federated training (it watches the rounds): add mode=federated",
        )
    if audit.attack == "canary_clients":  # before any data is built (sandbox.federated.canary_clients)
        _check(
            privacy.mechanism != "dpftrl",
            "audit.attack",
            "audit=canary_clients Poisson-samples its canary clients at the real clients' rate q and reads the "
            "ε of one round's sum; DP-FTRL has no sampling (each user once per tree) and releases tree-noised "
            "prefix sums, so that audit's statistic and bound do not apply: audit the released model instead "
            "(audit=loss, lira, rmia or canary)",
        )
        _check(
            privacy.mechanism in ("none", "dpfedavg"),
            "privacy.mechanism",
            f"audit=canary_clients audits FedAvg (privacy=none) or DP-FedAvg (privacy=dpfedavg); under "
            f"{privacy.mechanism} the server adds no noise and a canary client, which runs no local DP-SGD, "
            "would be released in the clear: its ε says nothing of the example-level guarantee",
        )
        _check(
            audit.control_on == "same",
            "audit.control_on",
            "audit=canary_clients needs its positive control on the same federated pipeline (canary clients "
            "exist only there): use audit.control_on=same",
        )
    data = _data_config(cfg.data)
    if audit.attack == "canary":  # before any data is built or model trained
        if data.source == "files":
            _check(
                data.manifest is not None,
                "data.manifest",
                "audit=canary needs canaries planted in the corpus and their manifest: plant them into a copy "
                "(python -m sandbox.data plant DATA_DIR OUT_DIR --canaries 100 --repeats 4 --users 1), then "
                "data.path=OUT_DIR data.manifest=OUT_DIR.canaries.json",
            )
        else:
            s = data.synthetic
            _check(
                s.n_canaries >= 1, "data.n_canaries", f"audit=canary needs planted canaries: ≥ 1, got {s.n_canaries}"
            )
            _check(
                s.n_fresh_canaries >= 1,
                "data.n_fresh_canaries",
                f"audit=canary needs fresh canaries (its non-members): ≥ 1, got {s.n_fresh_canaries}",
            )
    # last: importing the task's class imports its model's framework (torch: seconds), so every other
    # key is checked first and answers fast
    task = _task(cfg.get("task"))
    run_config = RunConfig(
        seed=int(cfg.seed),
        mode=mode,
        task=task,
        data=data,
        privacy=privacy,
        train=train,
        federation=federation,
        progress=bool(cfg.get("progress", True)),
        audit=audit,
        ledger=ledger,
        tracking=tracking,
    )
    check = getattr(task, "check", None)
    if not callable(check):
        raise ConfigError(
            f"task._target_: {type(task).__module__}.{type(task).__qualname__} is not a task: it has "
            "no check(cfg) (see sandbox.tasks.base.Task)"
        )
    check(run_config)  # the task's own rules (which audits apply, its keys' ranges)
    return run_config


def plain(cfg) -> dict:
    """The composed config as plain data (interpolations resolved, Enum members as their strings):
    what ``record.json`` holds under ``config`` and what is printed."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
