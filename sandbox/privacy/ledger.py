"""The privacy ledger: ε spent on one data set across runs, per unit, and a total not to pass.

Every run that trains on a data set spends privacy on it, and so do the models an audit
trains on the same real data (shadow models, a non-private control). The ledger
(``privacy_ledger.json`` in the output root, ``ledger.path``) keeps, per data set (the
corpus fingerprint) and unit (example, user, workspace), one entry per run with the
**events that ran** (noise multiplier, sample rate, steps: the record's ``privacy.events``),
each with how many times it ran (1 + the number of private shadow models). A non-private
training on the data set (a non-private run, shadow or control) is spent ε = ∞ for every
unit.

The ledger's ε for a (data set, unit) is the accountant's (Opacus RDP, ``epsilon_for``) over
the composition of all its entries' events, at δ = the sum of their δs: runs compose like
steps. Before a run trains, ``check`` refuses it (or warns, ``ledger.on_exceed=warn``) when
the ledger's ε plus an upper bound on what the run will spend (its target ε, or the ε of
its planned steps, times 1 + its private shadows; basic composition, so never too low) would
pass ``ledger.total_epsilon``. ``python -m sandbox.budget --ledger [PATH]`` shows it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.privacy.accounting import SubsampledGaussianEvent, epsilon_for

LEDGER_VERSION = 1
ALL_UNITS = "all"  # a non-private training counts against every unit


class LedgerError(ValueError):
    """The ledger refuses the run, or the ledger file cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Spend:
    """What one run spends on a data set: events with multiplicities, or ∞ (``private=False``)."""

    dataset: str
    unit: str  # example | user | workspace; ALL_UNITS for a non-private training
    private: bool
    events: tuple[tuple[dict, int], ...] = ()  # (event as dict, times it ran)
    delta: float = 0.0
    what: str = ""  # "training + 16 shadow models", ...

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "unit": self.unit, "private": self.private,
                "events": [{"event": e, "times": n} for e, n in self.events], "delta": self.delta,
                "what": self.what}


def _eps(value: float) -> str:
    return "∞ (not private)" if math.isinf(value) else f"{value:.3g}"


def _events(entries: list[dict]) -> list[SubsampledGaussianEvent]:
    out = []
    for entry in entries:
        for item in entry["events"]:
            event = SubsampledGaussianEvent(**item["event"])
            out.extend([event] * int(item["times"]))
    return out


class PrivacyLedger:
    """A JSON file of spends; read on every query, written atomically after each run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != LEDGER_VERSION or not isinstance(data.get("entries"), list):
                raise ValueError("not a privacy ledger (version or entries missing)")
            return data["entries"]
        except (ValueError, AttributeError) as exc:
            raise LedgerError(f"privacy ledger {self.path}: unreadable ({exc}); move it away to start a new one") \
                from None

    def spent(self, dataset: str, unit: str) -> tuple[float, float, int]:
        """(ε, δ, number of entries) spent on ``dataset`` at ``unit`` by the runs so far."""
        mine = [e for e in self.entries() if e["dataset"] == dataset and e["unit"] in (unit, ALL_UNITS)]
        if any(not e["private"] for e in mine):
            return math.inf, 0.0, len(mine)
        private = [e for e in mine if e["events"]]
        if not private:
            return 0.0, 0.0, len(mine)
        delta = sum(e["delta"] for e in private)
        return epsilon_for(events=_events(private), delta=delta, accountant="rdp"), delta, len(mine)

    def check(self, spend: Spend, *, planned_epsilon: float, total: float | None, on_exceed: str) -> str | None:
        """Refuse (LedgerError) or warn (the warning text) if the run could pass ``total``; else None."""
        if total is None:
            return None
        units = ("example", "user", "workspace") if spend.unit == ALL_UNITS else (spend.unit,)
        for unit in units:
            eps, _, n = self.spent(spend.dataset, unit)
            projected = eps + planned_epsilon
            if projected > total:
                message = (f"privacy ledger {self.path}: data set {spend.dataset[:12]} ({unit} level) has spent "
                           f"ε = {_eps(eps)} in {n} run(s); this run ({spend.what}) may add up to "
                           f"ε = {_eps(planned_epsilon)}, {_eps(projected)} in all, past "
                           f"ledger.total_epsilon = {total:g}. "
                           "Use another data set, lower privacy.target_epsilon (or drop the non-private parts: "
                           "privacy=none, audit.control=false, non-private shadows), or raise ledger.total_epsilon")
                if on_exceed == "warn":
                    return message
                raise LedgerError(message)
        return None

    def record(self, spend: Spend, *, run_dir: str, epsilon: float | None) -> None:
        entries = self.entries()
        entries.append({**spend.to_json(), "run_dir": str(run_dir), "run_epsilon": epsilon,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"version": LEDGER_VERSION, "entries": entries}, indent=1), encoding="utf-8")
        tmp.replace(self.path)

    def table(self) -> str:
        """Per (data set, unit): runs and ε so far (composed by the RDP accountant)."""
        entries = self.entries()
        if not entries:
            return f"privacy ledger {self.path}: no runs yet"
        keys = sorted({(e["dataset"], u) for e in entries
                       for u in (("example", "user", "workspace") if e["unit"] == ALL_UNITS else (e["unit"],))})
        lines = [f"privacy ledger {self.path}", f"{'data set':<14} {'unit':<10} {'runs':>5} {'ε spent':>10} {'δ':>9}"]
        for dataset, unit in keys:
            eps, delta, n = self.spent(dataset, unit)
            eps_text = "∞ (non-private)" if math.isinf(eps) else f"{eps:.3f}"
            lines.append(f"{dataset[:12]:<14} {unit:<10} {n:>5} {eps_text:>10} {delta:>9.1e}")
        return "\n".join(lines)
