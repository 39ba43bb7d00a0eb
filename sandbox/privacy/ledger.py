"""The privacy ledger: ε spent on one data set across runs, composed soundly across units.

Every run that trains on a data set spends privacy on it, and so do the models an audit
trains on the same real data (shadow models, a non-private control). The ledger
(``privacy_ledger.json`` in the output root, ``ledger.path``) keeps, per data set (the corpus
fingerprint), one entry per run listing **every model trained** on the data set: its unit
(example, user, workspace), its δ and the events that ran (the record's ``privacy.events``;
shadows with *their own* events and δ, from the record's ``audit.models_trained``). A
non-private model makes the data set ∞ at every unit.

**ε at a unit V** (``spent``): the events of every model at unit V are composed by Opacus'
RDP accountant (runs compose like steps) at δ_V = the sum of those runs' δs. Models at another
unit U count through what their guarantee implies for V (``sandbox.privacy.relations``),
composed first at U (RDP) and then converted:

* a coarser unit protects a finer one: a user-level (or workspace-level) ε gives an
  example-level (or user-level) guarantee, but adding or removing one example of a user who
  is present in both worlds is a *replace* of that user, i.e. two add/remove steps, so it
  counts as group privacy with k = 2: (2ε, (1 + e^ε)·δ);
* a finer unit does not protect a coarser one: an example-level (or client-level DP-SGD) spend
  counts at user level as **∞**, because a user is a group of examples of unbounded size and no
  per-user contribution cap is enforced here (likewise users → workspace).

The parts add by basic composition: ε_V + Σ ε'_U, δ_V + Σ δ'_U.

**The total** (``ledger.total_epsilon``): before a run trains, ``check`` projects the ledger's ε
with the run's planned spend (an upper bound: its target ε, or the ε of its planned steps,
times 1 + its private shadows) at every unit the data set has been promised (the units of its
earlier private runs and this run's own unit), and refuses the run (or warns,
``ledger.on_exceed=warn``) if any would pass the total. So switching ``privacy=`` cannot bypass
it: after a user-level run, an example-level run is refused at the user level (∞) and counted
at the example level with the user-level spend converted. ``python -m sandbox.budget --ledger
[PATH]`` shows the ε per data set and unit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from sandbox.io import write_json
from sandbox.privacy.accounting import epsilon_for
from sandbox.privacy.errors import LedgerError
from sandbox.privacy.events import PrivacyEvent, event_from_json
from sandbox.privacy.relations import ADD_REMOVE, UNIT_ORDER, implied

LEDGER_VERSION = 2  # version 1 entries (one unit per run) are read too
ALL_UNITS = "all"  # a non-private training counts against every unit


@dataclass(frozen=True)
class ModelSpend:
    """One model trained on the data set (``times`` identical ones): its unit, δ and the events that ran."""

    what: str
    private: bool
    unit: str | None = None  # example | user | workspace (None when not private)
    delta: float = 0.0
    events: tuple[dict, ...] = ()
    times: int = 1

    def to_json(self) -> dict:
        return {
            "what": self.what,
            "private": self.private,
            "unit": self.unit,
            "delta": self.delta,
            "events": list(self.events),
            "times": self.times,
        }


@dataclass(frozen=True)
class Spend:
    """What one run spends on a data set: every model it trains there.

    Shorthand for a single kind of model: ``Spend(dataset, unit, private, events=((event, times),), delta)``
    (``unit=ALL_UNITS, private=False`` for a non-private training); or pass ``models`` directly.
    """

    dataset: str
    unit: str = ALL_UNITS
    private: bool = False
    events: tuple[tuple[dict, int], ...] = ()  # shorthand: (event as dict, times it ran)
    delta: float = 0.0
    what: str = ""  # "training + 16 shadow models", ...
    models: tuple[ModelSpend, ...] = ()

    def all_models(self) -> tuple[ModelSpend, ...]:
        if self.models:
            return self.models
        if not self.private:
            return (ModelSpend(what=self.what or "training", private=False),)
        return tuple(
            ModelSpend(
                what=self.what or "training",
                private=True,
                unit=self.unit,
                delta=self.delta,
                events=(event,),
                times=int(times),
            )
            for event, times in self.events
        )

    @property
    def units(self) -> tuple[str, ...]:
        """The units this spend's private models are accounted at."""
        units = {m.unit for m in self.all_models() if m.private}
        if not units and self.private and self.unit in UNIT_ORDER:  # a planned spend: no events yet
            units = {self.unit}
        return tuple(sorted(units, key=UNIT_ORDER.index))

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "what": self.what, "models": [m.to_json() for m in self.all_models()]}


def _eps(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _models(entry: dict) -> list[ModelSpend]:
    """An entry's models; version 1 entries (``unit``, ``private``, ``events: [{event, times}]``) converted."""
    if "models" in entry:
        return [
            ModelSpend(
                what=m.get("what", ""),
                private=bool(m["private"]),
                unit=m.get("unit"),
                delta=float(m.get("delta", 0.0)),
                events=tuple(m.get("events", ())),
                times=int(m.get("times", 1)),
            )
            for m in entry["models"]
        ]
    if not entry["private"]:
        return [ModelSpend(what=entry.get("what", ""), private=False)]
    return [
        ModelSpend(
            what=entry.get("what", ""),
            private=True,
            unit=entry["unit"],
            delta=entry["delta"],
            events=(item["event"],),
            times=int(item["times"]),
        )
        for item in entry["events"]
    ]


def _events(models: list[ModelSpend]) -> list[PrivacyEvent]:
    """Every model's events; a DP-FTRL tree among them makes the whole unit compose in dp-accounting's RDP."""
    out = []
    for model in models:
        for event in model.events:
            out.extend([event_from_json(dict(event))] * model.times)
    return out


@dataclass(frozen=True)
class UnitSpend:
    """The ledger's ε at one unit, and how it was put together."""

    epsilon: float
    delta: float
    runs: int
    parts: tuple[str, ...]  # one line per contributing unit


def _at_unit(runs: list[list[ModelSpend]], unit: str) -> UnitSpend:
    """Compose every run's models at ``unit``: same-unit events by RDP, other units converted."""
    if any(not m.private for models in runs for m in models):
        return UnitSpend(math.inf, 0.0, len(runs), ("a non-private model trained on this data set",))
    eps_total, delta_total, parts = 0.0, 0.0, []
    for source in UNIT_ORDER:
        mine = [[m for m in models if m.unit == source and m.events] for models in runs]
        mine = [models for models in mine if models]
        if not mine:
            continue
        delta = sum(max(m.delta for m in models) for models in mine)  # per run: its models' δ
        eps = epsilon_for(events=_events([m for models in mine for m in models]), delta=delta, accountant="rdp")
        if source == unit:
            eps_total, delta_total = eps_total + eps, delta_total + delta
            parts.append(f"{source}-level spends of {len(mine)} run(s): ε = {eps:.4g} at δ = {delta:.2g} (RDP)")
            continue
        got = implied(eps, delta, unit=source, relation=ADD_REMOVE[unit])
        eps_total, delta_total = eps_total + got.epsilon, delta_total + got.delta
        parts.append(
            f"{source}-level spends of {len(mine)} run(s), ε = {eps:.4g} at δ = {delta:.2g}, count "
            f"{_eps(got.epsilon)} here: {got.conversion}"
        )
    return UnitSpend(eps_total, delta_total, len(runs), tuple(parts))


class PrivacyLedger:
    """A JSON file of spends; read on every query, appended to under a file lock (``PATH.lock``) and
    written atomically (``sandbox.io.write_json``), so concurrent runs never lose an entry."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") not in (1, LEDGER_VERSION) or not isinstance(data.get("entries"), list):
                raise ValueError("not a privacy ledger (version or entries missing)")
            return data["entries"]
        except (ValueError, AttributeError) as exc:
            raise LedgerError(
                f"privacy ledger {self.path}: unreadable ({exc}); move it away to start a new one"
            ) from None

    def runs(self, dataset: str) -> list[list[ModelSpend]]:
        """Every run's models on ``dataset``."""
        return [_models(e) for e in self.entries() if e["dataset"] == dataset]

    def at_unit(self, dataset: str, unit: str, extra: Spend | None = None) -> UnitSpend:
        """The ledger's ε on ``dataset`` at ``unit`` (with ``extra``'s models added, for a projection)."""
        runs = self.runs(dataset) + ([list(extra.all_models())] if extra is not None else [])
        return _at_unit(runs, unit)

    def spent(self, dataset: str, unit: str) -> tuple[float, float, int]:
        """(ε, δ, number of runs) spent on ``dataset`` at ``unit`` by the runs so far, every unit composed."""
        got = self.at_unit(dataset, unit)
        return got.epsilon, got.delta, got.runs

    def promised_units(self, dataset: str, spend: Spend | None = None) -> tuple[str, ...]:
        """The units the data set's private runs (and ``spend``) were accounted at."""
        units = {m.unit for models in self.runs(dataset) for m in models if m.private and m.unit}
        if spend is not None:
            units |= set(spend.units)
        return tuple(u for u in UNIT_ORDER if u in units)

    def check(self, spend: Spend, *, planned_epsilon: float, total: float | None, on_exceed: str) -> str | None:
        """Refuse (LedgerError) or warn (the warning text) if the run could pass ``total`` at any unit the
        data set has been promised (its earlier private runs' units and this run's own); else None."""
        if total is None:
            return None
        units = self.promised_units(spend.dataset, spend) or UNIT_ORDER
        # the run's upper bound, as one model at its unit (∞ when not private)
        if spend.private and math.isfinite(planned_epsilon):
            (own,) = spend.units or (spend.unit,)
            planned = Spend(
                dataset=spend.dataset,
                what=spend.what,
                models=(ModelSpend(what=spend.what, private=True, unit=own, delta=spend.delta or 0.0),),
            )
        else:
            planned = None
        for unit in units:
            before = self.at_unit(spend.dataset, unit)
            if planned is None:
                add, why = math.inf, " (a non-private model)"
            else:
                (own,) = planned.units
                add = (
                    planned_epsilon
                    if own == unit
                    else implied(planned_epsilon, 0.0, unit=own, relation=ADD_REMOVE[unit]).epsilon
                )
                why = (
                    ""
                    if own == unit
                    else f" (this run is {own}-level: "
                    + implied(1.0, 0.0, unit=own, relation=ADD_REMOVE[unit]).conversion
                    + ")"
                )
            projected = before.epsilon + add
            if projected > total:
                message = (
                    f"privacy ledger {self.path}: data set {spend.dataset[:12]} ({unit} level) has spent "
                    f"ε = {_eps(before.epsilon)} in {before.runs} run(s); this run ({spend.what}) may add up "
                    f"to ε = {_eps(add)} at {unit} level{why}, {_eps(projected)} in all, past "
                    f"ledger.total_epsilon = {total:g}. "
                    "Use another data set, lower privacy.target_epsilon (or drop the non-private parts: "
                    "privacy=none, audit.control=false, non-private shadows), or raise ledger.total_epsilon"
                )
                if on_exceed == "warn":
                    return message
                raise LedgerError(message)
        return None

    def record(self, spend: Spend, *, run_dir: str, epsilon: float | None) -> None:
        """Append one run's entry: read, add and write under the ledger's lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            entries = self.entries()
            entries.append(
                {
                    **spend.to_json(),
                    "run_dir": str(run_dir),
                    "run_epsilon": epsilon,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
            write_json(self.path, {"version": LEDGER_VERSION, "entries": entries})

    def change(self, spend: Spend, before: dict[str, float]) -> list[dict]:
        """What recording ``spend`` did to the data set's ε at each unit it was, or now is, accounted at:
        [{unit, before, after}] (ε as a number, ``None`` for ∞), for the end-of-run summary."""
        out = []
        for unit in self.promised_units(spend.dataset) or UNIT_ORDER:
            after = self.at_unit(spend.dataset, unit).epsilon
            was = before.get(unit, 0.0)
            out.append({"unit": unit, "before": _finite_or_none(was), "after": _finite_or_none(after)})
        return out

    def snapshot(self, dataset: str, spend: Spend) -> dict[str, float]:
        """The data set's ε at every unit ``change`` will report, before ``spend`` is recorded."""
        return {u: self.at_unit(dataset, u).epsilon for u in self.promised_units(dataset, spend) or UNIT_ORDER}

    def table(self) -> str:
        """Per (data set, unit): runs and ε so far, every unit composed (see the module docstring)."""
        entries = self.entries()
        if not entries:
            return f"privacy ledger {self.path}: no runs yet"
        lines = [f"privacy ledger {self.path}", f"{'data set':<14} {'unit':<10} {'runs':>5} {'ε spent':>10} {'δ':>9}"]
        for dataset in sorted({e["dataset"] for e in entries}):
            for unit in self.promised_units(dataset) or UNIT_ORDER:
                got = self.at_unit(dataset, unit)
                non_private = any(not m.private for models in self.runs(dataset) for m in models)
                eps_text = (
                    "∞ (non-private)" if non_private else ("∞" if math.isinf(got.epsilon) else f"{got.epsilon:.3f}")
                )
                delta_text = f"{got.delta:>9.1e}" if math.isfinite(got.delta) else f"{'—':>9}"
                lines.append(f"{dataset[:12]:<14} {unit:<10} {got.runs:>5} {eps_text:>10} {delta_text}")
        return "\n".join(lines)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
