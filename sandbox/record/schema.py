"""The typed run record: frozen dataclasses for ``record.json`` and its sections.

Every section keeps the keys it does not type in ``extra`` (as recorded), and the order of its
keys, so ``RunRecord.from_json(d).to_json() == d`` for every record a run writes. A key that is
typed but absent stays absent. Types are checked on reading; an error is a ``RecordError``
naming the file and the dotted key. Stdlib only: readers load records without torch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from sandbox.io import write_json

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"


class RecordError(ValueError):
    """A record that cannot be read; the message names the file and the key."""


# --- kinds: what a value may be --------------------------------------------------------------

_KIND_TEXT = {
    "str": "text",
    "int": "a whole number",
    "number": "a number",
    "bool": "true or false",
    "mapping": "an object",
    "list": "a list",
}


def _ok(kind: str, value) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "mapping":
        return isinstance(value, Mapping)
    if kind == "list":
        return isinstance(value, list)
    raise AssertionError(kind)


def _describe(kind, null: bool) -> str:
    text = (
        _KIND_TEXT[kind] if isinstance(kind, str) else ("a list of objects" if isinstance(kind, tuple) else "an object")
    )
    return f"{text} or null" if null else text


def key(kind, doc: str, *, null: bool = False, optional: bool = False, name: str | None = None):
    """A typed key of a section. ``kind``: ``"str"``, ``"int"``, ``"number"``, ``"bool"``, ``"mapping"``,
    ``"list"``, a ``Section`` class, or ``(Section,)`` for a list of them. ``null``: may be null;
    ``optional``: may be absent; ``name``: the JSON key when it is not the attribute's name."""
    meta = {"kind": kind, "doc": doc, "null": null, "optional": optional, "name": name}
    if optional:
        return field(default=None, metadata=meta)
    return field(metadata=meta)


def _typed_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "kind" in f.metadata]


def _json_name(f: dataclasses.Field) -> str:
    return f.metadata["name"] or f.name


def _freeze(value):
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Section:
    """A record section: typed keys (attributes), ``extra`` (other keys, as recorded, read-only)."""

    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)
    open_ended: ClassVar[str] = ""  # docs: what the other keys are, when the section has any

    @classmethod
    def from_json(cls, data, *, origin: str = "record", path: str = "", partial: bool = False):
        """Check and wrap ``data`` (a JSON object); ``RecordError`` naming ``origin`` and the key.

        ``partial``: required keys may be missing (they read as None and stay absent); the types of
        the keys present are checked all the same (for readers that report on what a record has)."""
        where = path or "(top level)"
        if not isinstance(data, Mapping):
            raise RecordError(f"{origin}: {where}: expected an object, got {_short(data)}")
        values, typed = {}, set()
        for f in _typed_fields(cls):
            name = _json_name(f)
            typed.add(name)
            dotted = f"{path}.{name}" if path else name
            if name not in data:
                if not f.metadata["optional"] and not partial:
                    raise RecordError(f"{origin}: {dotted}: missing from the record")
                values[f.name] = None
                continue
            values[f.name] = _read(f.metadata["kind"], f.metadata["null"], data[name], origin, dotted, partial)
        extra = {k: _freeze(copy.deepcopy(v)) for k, v in data.items() if k not in typed}
        return cls(**values, extra=MappingProxyType(extra), key_order=tuple(data))

    def to_json(self) -> dict:
        """The section as JSON data: the recorded keys in their recorded order (a fresh copy)."""
        out = {}
        for f in _typed_fields(type(self)):
            name, value = _json_name(f), getattr(self, f.name)
            if value is None and name not in self.key_order and (f.metadata["optional"] or self.key_order):
                continue  # absent, not null
            out[name] = _write(value)
        out.update({k: _thaw(v) for k, v in self.extra.items()})
        order = {k: i for i, k in enumerate(self.key_order)}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))

    def get(self, name: str, default=None):
        """A key by its JSON name, typed or extra (as JSON data, not a section); ``default`` when absent."""
        for f in _typed_fields(type(self)):
            if _json_name(f) == name:
                value = getattr(self, f.name)
                present = value is not None or name in self.key_order or not (f.metadata["optional"] or self.key_order)
                return _write(value) if present else default
        return _thaw(self.extra[name]) if name in self.extra else default

    def __contains__(self, name: str) -> bool:
        return self.get(name, _ABSENT) is not _ABSENT


_ABSENT = object()


def _short(value) -> str:
    return repr(value)[:200]


def _read(kind, null: bool, value, origin: str, dotted: str, partial: bool = False):
    if value is None:
        if null:
            return None
        raise RecordError(f"{origin}: {dotted}: expected {_describe(kind, False)}, got None")
    if isinstance(kind, tuple):
        if not isinstance(value, list):
            raise RecordError(f"{origin}: {dotted}: expected {_describe(kind, null)}, got {_short(value)}")
        return tuple(
            kind[0].from_json(v, origin=origin, path=f"{dotted}[{i}]", partial=partial) for i, v in enumerate(value)
        )
    if isinstance(kind, type):
        return kind.from_json(value, origin=origin, path=dotted, partial=partial)
    if not _ok(kind, value):
        raise RecordError(f"{origin}: {dotted}: expected {_describe(kind, null)}, got {_short(value)}")
    return _freeze(copy.deepcopy(value))


def _write(value):
    if isinstance(value, Section):
        return value.to_json()
    if isinstance(value, tuple) and value and isinstance(value[0], Section):
        return [v.to_json() for v in value]
    return _thaw(value)


# --- the sections ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Versions(Section):
    python: str = key("str", "Python version")
    torch: str = key("str", "torch version")
    opacus: str | None = key("str", "opacus version (null: not installed)", null=True)
    flwr: str | None = key("str", "flwr version (null: not installed)", null=True)
    sandbox: str | None = key("str", "this package's version (null: not installed)", null=True)
    open_ended = "other library versions"


@dataclass(frozen=True, kw_only=True)
class DataSection(Section):
    n_users: int = key("int", "users in the corpus")
    n_workspaces: int = key("int", "workspaces in the corpus")
    n_messages: int = key("int", "messages in the corpus")
    n_examples: int = key("int", "training examples")
    n_test_examples: int = key("int", "held-out users' examples")
    n_train_users: int = key("int", "training users")
    n_test_users: int = key("int", "held-out users")
    n_opted_out_users: int = key("int", "users excluded by consent")
    n_opted_out_workspaces: int = key("int", "workspaces opted out")
    n_canaries: int = key("int", "planted canaries")
    n_classes: int = key("int", "label classes")
    fingerprint: str = key("str", "sha256 of the corpus (``Corpus.fingerprint``)")
    n_clients: int | None = key("int", "federated: clients", optional=True)
    client_unit: str | None = key("str", "federated: what a client is (user | workspace)", optional=True)
    open_ended = "other data counts"


@dataclass(frozen=True, kw_only=True)
class ModelSection(Section):
    sha256: str = key("str", "``model_fingerprint`` of model.pt: names, dtypes, shapes and bytes")
    file: str = key("str", "the model's file in the run directory (model.pt)")
    trained_users_file: str | None = key("str", "the audits' members (int64 user indices, .npy)", optional=True)
    # what inference needs (``sandbox.serve.load``): the task's class, the model's class, the label space
    # (class id → label, e.g. emoji or item name) and the tokenizer's version
    task_class: str | None = key("str", "the task's class (module.QualName), rebuilt from config.task", optional=True)
    model_class: str | None = key("str", "the network's class (module.QualName) that model.pt fits", optional=True)
    classes: tuple | None = key("list", "class id → label (the model's outputs in order)", optional=True)
    tokenizer: str | None = key("str", "the text tokenizer's version (sandbox.data.normalize)", optional=True)


@dataclass(frozen=True, kw_only=True)
class PrivacySection(Section):
    mechanism: str = key("str", "none | dpsgd | dpfedavg | dpftrl | client_dpsgd")
    unit: str = key("str", "example | user | workspace: the neighbouring unit of ε")
    epsilon: float | None = key("number", "the accountant's ε (null: not private; may be inf)", null=True)
    delta: float | None = key("number", "δ of ε (null: not private)", null=True)
    accountant: str | None = key("str", "rdp | prv | gdp (null: not private)", null=True)
    noise_multiplier: float | None = key("number", "σ", null=True)
    sample_rate: float | None = key("number", "Poisson sampling rate q (null: no sampling, dpftrl)", null=True)
    sampling: str | None = key(
        "str", "how units were sampled (dpftrl: none, participation at most once per tree)", null=True
    )
    steps: int = key("int", "optimizer steps (central) or rounds (federated) that ran")
    clip_norm: float | None = key("number", "clipping norm", null=True)
    target_epsilon: float | None = key("number", "the configured target ε (null: σ given)", null=True, optional=True)
    neighbouring_relation: str | None = key("str", "e.g. add/remove one user", null=True)
    noise_source: str | None = key(
        "str", "secure | seeded (null: not private; absent: written before secure noise)", null=True, optional=True
    )
    secure_rng: bool | None = key("bool", "noise from the OS CSPRNG, never written down", optional=True)
    noise_warning: str | None = key(
        "str", "seeded noise: why the run is not private against the record's holder", optional=True
    )
    events: tuple = key(
        "list",
        "the privacy events that ran (``SubsampledGaussianEvent.to_json``; dpftrl: one "
        "``TreeAggregationEvent.to_json`` per tree, kind tree_aggregation)",
    )
    participation: Mapping | None = key(
        "mapping",
        "dpftrl: the participation rule (each user at most once per k rounds, tree restarts every k rounds), "
        "rounds_per_epoch k, clients_per_round m, order, trees, restarts, and max_participations_per_tree as "
        "the server counted it",
        optional=True,
    )
    per_example_norms: str | None = key(
        "str",
        "dpsgd: how per-example gradient norms were computed: hashed_bag (sandbox.train.fastdp, exact, no "
        "per-example gradients) | opacus_ghost (Opacus ghost clipping)",
        optional=True,
    )
    open_ended = "mechanism details (federated: clipping, rounds, …; dpftrl: server_step, tree_aggregation)"


@dataclass(frozen=True, kw_only=True)
class Metrics(Section):
    top1: float = key("number", "held-out users' top-1 accuracy")
    baseline: Mapping = key("mapping", "most-frequent baseline: the same top-k keys")
    split: str = key("str", "what the metrics were measured on (held-out users)")
    ranking: Mapping | None = key("mapping", "recommenders: recall@k / NDCG@k vs popularity", optional=True)
    open_ended = "top-k accuracies (top5, top10, …)"

    def top_k(self) -> str:
        """The top-k key other than top1 (e.g. ``top5``)."""
        return next(k for k in self.to_json() if k.startswith("top") and k != "top1")


@dataclass(frozen=True, kw_only=True)
class CurvePoint(Section):
    step: int | None = key("int", "central: optimizer step", optional=True)
    round: int | None = key("int", "federated: round", optional=True)
    epsilon: float | None = key("number", "ε accounted so far (null: not private)", null=True, optional=True)
    train_loss: float | None = key("number", "training loss", null=True, optional=True)
    open_ended = "held-out metrics (top1, top5, …), federated clients and clip norm"


@dataclass(frozen=True, kw_only=True)
class Timing(Section):
    seconds: float = key("number", "wall clock of the run (or re-audit)")
    data_seconds: float | None = key(
        "number", "the data prepared: corpus built or read, split, featurised", optional=True
    )
    peak_rss_mb: float = key("number", "peak resident memory, MB")
    original: Mapping | None = key("mapping", "re-audit: the audited run's timing", null=True, optional=True)
    open_ended = "engine timings (training_seconds, seconds_per_round, …)"


@dataclass(frozen=True, kw_only=True)
class Audit(Section):
    attack: str = key("str", "loss | lira | rmia | canary | suggestions | canary_clients | server_view")
    result: str = key("str", "measured | inconclusive | dp_bug | …")
    level: str | None = key("str", "example | user | workspace", optional=True)
    threat: str | None = key("str", "what the attacker sees", optional=True)
    reason: str | None = key("str", "why the result", optional=True)
    control: Mapping | None = key("mapping", "the positive control (its own audit under ``audit``)", optional=True)
    models_trained: tuple | None = key("list", "every model the audit trained (for the ledger)", optional=True)
    open_ended = "the attack's measurements (auc, auc_ci, tpr_at_1pct_fpr, membership, canaries, …)"


@dataclass(frozen=True, kw_only=True)
class ReauditOf(Section):
    run_dir: str = key("str", "the re-audited run directory")
    record_sha256: str = key("str", "sha256 of that run's record.json bytes")
    out_dir: str | None = key("str", "where the re-audit was written (default RUN_DIR/audits/ATTACK)", optional=True)


@dataclass(frozen=True, kw_only=True)
class RunRecord(Section):
    """``record.json``: one run (or re-audit), written by ``sandbox.run`` (``run`` and ``reaudit``)."""

    schema_version: int = key("int", f"record schema version ({SCHEMA_VERSION})")
    task: str = key("str", "emoji | jobs | channels")
    mode: str = key("str", "central | federated")
    engine: str = key("str", "central | inprocess | flower | deployment")
    seed: int = key("int", "the run's seed")
    status: str = key("str", "completed | stopped_budget | failed (the audit found a probable DP bug)")
    config: Mapping = key("mapping", "the resolved config (``sandbox.config``), as composed")
    versions: Versions = key(Versions, "what ran")
    data: DataSection = key(DataSection, "the corpus and the split")
    model: ModelSection = key(ModelSection, "the trained model")
    privacy: PrivacySection = key(PrivacySection, "the privacy spent (``sandbox.privacy.section``)")
    metrics: Metrics = key(Metrics, "held-out utility and its baseline")
    curve: tuple[CurvePoint, ...] = key((CurvePoint,), "learning curve, one point per evaluation")
    timing: Timing = key(Timing, "time and memory")
    audit: Audit | None = key(Audit, "the audit (absent: audit=none)", optional=True)
    tracking: str | None = key("str", "where the record was logged (tracking.backend)", null=True, optional=True)
    reaudit_of: ReauditOf | None = key(ReauditOf, "re-audit: the run whose model was audited", optional=True)
    open_ended = "keys added by later writers"

    @classmethod
    def from_json(cls, data, *, origin: str = "record", path: str = "", partial: bool = False):
        if (
            isinstance(data, Mapping)
            and not path
            and "schema_version" in data
            and data["schema_version"] != SCHEMA_VERSION
        ):
            raise RecordError(
                f"{origin}: schema_version: {_short(data['schema_version'])} is not supported "
                f"(this version reads {SCHEMA_VERSION})"
            )
        return super().from_json(data, origin=origin, path=path, partial=partial)

    @property
    def private(self) -> bool:
        return self.privacy.epsilon is not None


# --- files -----------------------------------------------------------------------------------


def record_path(run_dir: str | Path) -> Path:
    """``run_dir/record.json``, or ``run_dir`` itself when it is a record file."""
    path = Path(run_dir)
    return path if path.suffix == ".json" and not path.is_dir() else path / RECORD_FILE


def load(run_dir: str | Path, *, partial: bool = False) -> RunRecord:
    """The record of a run directory (or a record.json path); ``RecordError`` naming the file and key.

    ``partial``: as for ``RunRecord.from_json``."""
    path = record_path(run_dir)
    if not path.is_file():
        raise RecordError(f"{path}: missing (a run directory holds {RECORD_FILE} once its run completed)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RecordError(f"{path}: not a readable JSON run record: {exc}") from None
    return RunRecord.from_json(data, origin=str(path), partial=partial)


def save(run_dir: str | Path, record: RunRecord) -> Path:
    """Write ``record`` as ``run_dir/record.json``, atomically (``sandbox.io.write_json``)."""
    path = Path(run_dir) / RECORD_FILE
    write_json(path, record.to_json())
    return path


# --- docs ------------------------------------------------------------------------------------


def _type_text(kind, null: bool) -> str:
    if isinstance(kind, tuple):
        text = "list of objects"
    elif isinstance(kind, type):
        text = "object"
    else:
        text = {
            "str": "string",
            "int": "integer",
            "number": "number",
            "bool": "boolean",
            "mapping": "object",
            "list": "list",
        }[kind]
    return f"{text} \\| null" if null else text


def _rows(cls, prefix: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for f in _typed_fields(cls):
        m = f.metadata
        dotted = f"{prefix}{_json_name(f)}"
        rows.append((dotted, _type_text(m["kind"], m["null"]), "optional" if m["optional"] else "required", m["doc"]))
        kind = m["kind"]
        if isinstance(kind, tuple):
            rows += _rows(kind[0], f"{dotted}[].")
        elif isinstance(kind, type):
            rows += _rows(kind, f"{dotted}.")
    if cls.open_ended:
        rows.append((f"{prefix}*", "any", "optional", f"other keys, kept as recorded: {cls.open_ended}"))
    return rows


def markdown() -> str:
    """docs/record.md: every key of the record (dotted path, type, presence, meaning)."""
    lines = [
        "# The run record (`record.json`)",
        "",
        "Generated from `sandbox/record/schema.py` by `python -m sandbox.record --markdown`; do not edit.",
        "",
        f"Schema version {SCHEMA_VERSION}. `a.b`: key `b` of object `a`; `a[].b`: key `b` of every item of "
        "list `a`; `*`: keys the schema does not type, kept as recorded. Read with "
        "`sandbox.record.load(run_dir)`, write with `sandbox.record.save(run_dir, record)`.",
        "",
        "| key | type | presence | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k}` | {t} | {p} | {d.replace('|', chr(92) + '|')} |" for k, t, p, d in _rows(RunRecord, "")]
    return "\n".join(lines) + "\n"
