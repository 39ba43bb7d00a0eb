"""Product promises as testable claims: a claim file + a run record → PASS / FAIL / INCONCLUSIVE.

``python -m sandbox.claim CLAIM RUN_DIR [RUN_DIR ...]`` (CLAIM: a path, or a name in ``conf/claim/``)
prints the evidence table and the verdict, and writes ``claim_<name>.json`` into each RUN_DIR
(atomically, only once the check succeeded). Several RUN_DIRs are audits of **one model** (same
config and seed, another ``audit=``: the records' ``model.sha256`` must agree): a record holds
one audit, and a promise such as "cannot learn, memorize or reproduce" needs several. Exit codes: **0** PASS, **1** FAIL, **2** INCONCLUSIVE, **3** bad
input (claim file or record missing or malformed; the message names the file and the key; no
traceback, nothing written), **4** probable DP bug (a record's audit says ``result: dp_bug``: every
row FAILs, and the exit code says why; ``sandbox.cli``). 3, not 2 as for ``python -m sandbox``, because 2 is a verdict here.

A claim file (YAML) states the promise in the product's words and the checks that test it::

    name: cannot-memorize                  # letters, digits, . _ -; names claim_<name>.json
    promise: "Our models cannot learn, memorize or reproduce customer data."
    require_control: true                  # optional (default true): see "Controls" below
    checks:
      - {type: membership_tpr, max: 0.02, fpr: 0.01, level: user}   # fpr 0.001 | 0.01; level user | example | canary
      - {type: membership_auc, max: 0.55, level: user}
      - {type: canary_exposure, max: 2.5, method: rank, statistic: mean, min_canaries: 50}
      - {type: extraction, max_extracted: 0, min_canaries: 100}
      - {type: attribute_advantage, max: 0.05, field: gap}           # field gap | members
      - {type: epsilon, max: 1.0, delta: 1.0e-5, unit: user}

**The record is checked before it is trusted**: read as a typed ``sandbox.record.RunRecord`` (a
missing key or a value of the wrong type is refused, naming it), then ``sandbox.claim.record_checks``. Refused (exit 3,
``ClaimError`` naming the file and key, nothing written): ``status`` other than ``completed``,
``stopped_budget`` or ``failed``; ``privacy.epsilon`` NaN or negative (inf is possible: the ε row
FAILs, below); an unknown ``privacy.mechanism``, or a private one without an ε; a ``privacy.unit``
that does not fit ``privacy.mechanism`` (``dpsgd``, ``client_dpsgd``: example; ``dpfedavg``: user
or workspace; ``none``: ε must be null); a ``privacy.noise_source`` other than ``secure`` or
``seeded``; an ε that does not recompute from ``privacy.events`` with the recorded accountant and
δ (``sandbox.privacy.epsilon_for``, relative tolerance 1e-6), or events that are not events (an
unknown key is named). Read from a run directory, the record's ``model.sha256`` must match the
``model.pt`` beside it (``sandbox.record.model_fingerprint``): a stale record of an earlier run
beside a new model is refused, and so are a missing ``model.pt`` or ``model.sha256``. A record given as a dict has no model file: the result's
``record_checks`` says that the fingerprint was not verified. A ``failed`` record (its audit found
a probable DP bug) is judged, and every row FAILs with that reason.

How each check is judged on the run's own audit (the CI is the record's bootstrap interval):

* **CI checks** (membership TPR/AUC, attribute advantage): PASS when the CI's upper end ≤ max,
  FAIL when its lower end > max, INCONCLUSIVE when the CI straddles max (too wide to decide).
  TPR at an FPR the audit cannot resolve (fewer than 1/fpr non-members: it is read at zero false
  positives) is INCONCLUSIVE, whatever its CI, with the non-members it needs: ceil(1/fpr) to be
  measurable at all, about 10/fpr for a usable CI.
* **canary_exposure** (bits, Carlini et al. 2019): the mean or max over canaries whose host
  trained. The record keeps no CI, so fewer than ``min_canaries`` such canaries is INCONCLUSIVE
  whatever the value; else FAIL above max, PASS at or below, except INCONCLUSIVE when
  ``method: rank`` cannot measure above max (its ceiling log2(fresh canaries + 1) ≤ max).
* **extraction**: FAIL when more than ``max_extracted`` canaries were extracted; INCONCLUSIVE
  when the record has no ``audit.extraction {n_canaries, n_extracted}`` (``audit=canary`` writes
  it: "not measured by this run" otherwise) or fewer than ``min_canaries`` were tried.
* **Audit state**: an audit ``result: dp_bug`` makes every check it measured, and ``epsilon``,
  FAIL; ``result: inconclusive`` (failed positive control) makes its checks INCONCLUSIVE unless
  they already FAIL: a weak attack is no evidence of privacy, but leakage it finds is.
* A measurement the run did not make (another attack or level, no audit) is INCONCLUSIVE.

**Controls: a row that does not discriminate cannot PASS.** Every non-ε check is judged a second
time, by the same rule and with the audit state ignored, on the record's *control view*: the
record with ``audit`` replaced by ``audit.control.audit`` (the positive control's own audit: the
same attack on a non-private model of the same pipeline), or the record itself when the run is
not private (``audit.control.ran_on: "this run (not private)"``). The row **discriminates** when
the control view FAILs the check: the non-private model shows the leak the check bounds. Then:

* a row that would PASS and discriminates PASSes;
* a row that would PASS but whose control was judged and does not FAIL is INCONCLUSIVE, "does
  not discriminate: a non-private model of the same pipeline also passes (control: …)" (or
  "does not fail it either" when the control's CI straddles the bound);
* a row that would PASS but whose control could not be judged (no control recorded, the
  control's audit missing from an older record: "re-run the audit", the statistic not measured
  on the control or not measurable there) is INCONCLUSIVE, "no control on this statistic",
  unless the claim sets ``require_control: false``: then it PASSes and says "(no discriminating
  control: require_control: false)";
* FAIL and INCONCLUSIVE stay what they are, whatever the control says (leakage found is leakage).

Each row records ``control`` (the control's value and verdict on that statistic, e.g. "AUC 0.871
[0.859, 0.882]: FAIL", or why there is none) and ``discriminates`` (True: the control FAILs;
False: it was judged and does not; None: ε rows, or no control measurement).

* **epsilon**: a guarantee of the mechanism (no control), so a run that does not give it FAILs:
  not private; noise seeded from the record (``privacy.noise_source: seeded``: "seeded noise
  (research mode): anyone holding the record can regenerate and subtract the noise; no DP
  guarantee"), or a record that does not state its noise source (written before secure noise:
  its noise was seeded from the recorded seed); ε = inf (no finite guarantee); another unit (an
  example-level ε never satisfies a user-level claim; a workspace-level ε is not recomputed for
  users either); record δ above the stated δ; or ε above max. ε from the ``gdp`` accountant (a
  CLT approximation that can under-state ε) is at best INCONCLUSIVE.

* **canary_client_epsilon** (federated runs): the canary-client ε estimate of ``audit=canary_clients``
  (Andrew et al. 2024) judged on its bootstrap CI like the CI checks; its control is the same
  federated pipeline without DP. On a central run the row is **N/A**: it counts in no verdict.

Overall: FAIL if any check fails, else INCONCLUSIVE if any is undecided, else PASS (N/A rows
aside; a claim whose every row is N/A is INCONCLUSIVE). With several
records of one model, each check takes the strongest evidence: FAIL if any record fails it, else
PASS if any passes it, else INCONCLUSIVE.

In a team's own tests (pytest): train and audit as usual (``python -m sandbox … audit=lira``),
then assert the promise on the run directory; a FAIL or INCONCLUSIVE raises AssertionError whose
message is the evidence table, so the test log says which check failed and why::

    from sandbox.claim import assert_claim, check_claim

    def test_release_candidate_keeps_the_promise():
        assert_claim("cannot-memorize", "outputs/runs/release-candidate")   # a name, or a claim file path

    def test_smoke_run_does_not_fail_the_promise(tiny_run_dir):   # tiny runs decide little:
        assert_claim("conf/claim/anonymized-aggregated.yaml", tiny_run_dir, allow_inconclusive=True)

    result = check_claim("cannot-memorize", record_dict)   # or inspect: result.verdict, result.evidence

``check_claim`` and ``assert_claim`` write nothing; bad input raises ``ClaimError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path

from sandbox.claim.checks import (
    CHECKS,
    FAIL,
    INCONCLUSIVE,
    NO_CONTROL,
    NOT_APPLICABLE,
    NOT_DISCRIMINATING,
    NOT_MEASURED,
    PASS,
    ClaimError,
    Evidence,
    Record,
    judge_row,
)
from sandbox.claim.record_checks import verify_record
from sandbox.cli import Exit, verdict_exit
from sandbox.io import write_json
from sandbox.record import RECORD_FILE, RecordError, RunRecord, load, record_path

__all__ = [
    "CHECKS",
    "Claim",
    "ClaimError",
    "ClaimResult",
    "Evidence",
    "FAIL",
    "INCONCLUSIVE",
    "NOT_APPLICABLE",
    "NOT_MEASURED",
    "NO_CONTROL",
    "NOT_DISCRIMINATING",
    "PASS",
    "assert_claim",
    "check_claim",
    "load_claim",
    "load_record",
    "verify_record",
    "write_result",
]

CLAIM_DIR = Path(__file__).resolve().parents[1] / "conf" / "claim"
EXIT_CODES = {v: int(verdict_exit(v)) for v in (PASS, FAIL, INCONCLUSIVE)}
EXIT_BAD_INPUT = int(Exit.BAD_INPUT)
EXIT_DP_BUG = int(Exit.DP_BUG)


@dataclass(frozen=True)
class Claim:
    """A validated claim file: the promise and its checks (instances of ``CHECKS`` classes)."""

    name: str
    promise: str
    checks: tuple
    path: str
    require_control: bool = True  # a row without a control measurement of its statistic cannot PASS


@dataclass(frozen=True)
class ClaimResult:
    """The verdict of one claim on one model's record(s), with one evidence row per check."""

    claim: Claim
    verdict: str
    evidence: tuple[Evidence, ...]
    record: str  # where the record(s) came from, comma-separated
    record_checks: tuple[str, ...] = ()  # what was verified about the record(s) before judging (record_checks)
    dp_bug: bool = False  # a record's audit found a probable DP bug (audit.result dp_bug, or status failed)

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 2 INCONCLUSIVE; 4 when a record's audit found a probable DP bug (``sandbox.cli``)."""
        return EXIT_DP_BUG if self.dp_bug else EXIT_CODES[self.verdict]

    def to_dict(self) -> dict:
        return {
            "name": self.claim.name,
            "promise": self.claim.promise,
            "claim_file": self.claim.path,
            "record": self.record,
            "record_checks": list(self.record_checks),
            "verdict": self.verdict,
            "evidence": [asdict(e) for e in self.evidence],
        }

    def table(self) -> str:
        """The evidence table, plain text: one row per check, then the verdict."""

        def num(v):
            return "—" if v is None else f"{v:.3f}"

        rows = [("check", "measured", "CI", "bound", "verdict", "control", "reason")] + [
            (
                e.check,
                num(e.measured),
                "—" if e.ci is None else f"[{e.ci[0]:.3f}, {e.ci[1]:.3f}]",
                e.bound,
                e.verdict,
                e.control,
                e.reason + (f" [{e.source}]" if e.source else ""),
            )
            for e in self.evidence
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[6] for r in rows]
        checked = "".join(f"record check: {line}\n" for line in self.record_checks)
        return (
            f"claim: {self.claim.name} ({self.claim.path})\npromise: {self.claim.promise}\n"
            f"record: {self.record}\n{checked}\n" + "\n".join(lines) + f"\n\nverdict: {self.verdict}"
        )


def _check_value(cls, index: int, key: str, value, origin: str):
    where = f"{origin}: checks[{index}] ({cls.type}).{key}"
    annotation = {f.name: f.type for f in fields(cls)}[key]
    if annotation == "str":
        if value not in cls.choices[key]:
            raise ClaimError(f"{where}: must be one of {', '.join(cls.choices[key])}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ClaimError(f"{where}: must be a number, got {value!r}")
    if annotation == "int" and value != int(value):
        raise ClaimError(f"{where}: must be a whole number, got {value!r}")
    low, high, brackets = (*cls.limits[key], "[]")[:3]
    if not (low < value if brackets[0] == "(" else low <= value) or not (
        value < high if brackets[1] == ")" else value <= high
    ):
        raise ClaimError(f"{where}: must be in {brackets[0]}{low:g}, {high:g}{brackets[1]}, got {value!r}")
    return int(value) if annotation == "int" else float(value)


def _parse_check(item, index: int, origin: str):
    if not isinstance(item, Mapping):
        raise ClaimError(f"{origin}: checks[{index}]: each check must be a mapping with a 'type', got {item!r}")
    if "type" not in item:
        raise ClaimError(f"{origin}: checks[{index}].type: missing (one of {', '.join(CHECKS)})")
    cls = CHECKS.get(item["type"])
    if cls is None:
        raise ClaimError(f"{origin}: checks[{index}].type: unknown check {item['type']!r} (known: {', '.join(CHECKS)})")
    known = {f.name: f for f in fields(cls)}
    for key in item:
        if key != "type" and key not in known:
            raise ClaimError(f"{origin}: checks[{index}] ({cls.type}).{key}: unknown key (known: {', '.join(known)})")
    for name, f in known.items():
        if name not in item and f.default is MISSING:
            raise ClaimError(f"{origin}: checks[{index}] ({cls.type}).{name}: missing")
    return cls(**{k: _check_value(cls, index, k, v, origin) for k, v in item.items() if k != "type"})


def _claim_path(claim: str | Path) -> Path:
    path = Path(claim)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        raise ClaimError(f"{path}: claim file not found")
    named = CLAIM_DIR / f"{path}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in CLAIM_DIR.glob("*.yaml")))
        raise ClaimError(f"{claim}: no such claim file, nor a claim named so in {CLAIM_DIR} (known: {known})")
    return named


def load_claim(claim: str | Path) -> Claim:
    """Read and validate a claim file (a path, or a name in conf/claim/); errors name the file and key."""
    import yaml
    from omegaconf import OmegaConf  # the YAML dialect of the conf/ tree (1e-5 is a number)

    path = _claim_path(claim)
    origin = str(path)
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ClaimError(f"{origin}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ClaimError(f"{origin}: a claim file must be a mapping with name, promise and checks")
    for key in ("name", "promise", "checks"):
        if data.get(key) in (None, "", []):
            raise ClaimError(f"{origin}: {key}: missing or empty")
    unknown = sorted(set(data) - {"name", "promise", "checks", "require_control"})
    if unknown:
        raise ClaimError(f"{origin}: {unknown[0]}: unknown key (known: name, promise, checks, require_control)")
    if not isinstance(data.get("require_control", True), bool):
        raise ClaimError(f"{origin}: require_control: must be true or false, got {data['require_control']!r}")
    if not isinstance(data["name"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", data["name"]):
        raise ClaimError(
            f"{origin}: name: letters, digits, '.', '_' and '-' only (it names claim_<name>.json), got {data['name']!r}"
        )
    if not isinstance(data["promise"], str):
        raise ClaimError(f"{origin}: promise: must be text, got {data['promise']!r}")
    if not isinstance(data["checks"], list):
        raise ClaimError(f"{origin}: checks: must be a list of checks, got {data['checks']!r}")
    checks = tuple(_parse_check(item, i, origin) for i, item in enumerate(data["checks"]))
    return Claim(
        name=data["name"],
        promise=data["promise"].strip(),
        checks=checks,
        path=origin,
        require_control=data.get("require_control", True),
    )


def load_record(run: str | Path | Mapping | RunRecord) -> Record:
    """A run record (``sandbox.record.RunRecord``, or a dict of one), or the record of a run directory
    (or its record.json); ``ClaimError`` naming the file and the key when it is not a record."""
    try:
        if isinstance(run, RunRecord):
            return Record(run, "record")
        if isinstance(run, Mapping):
            return Record(RunRecord.from_json(run, origin="record"), "record")
        path = record_path(run)
        return Record(load(path), str(path), path)
    except RecordError as exc:
        raise ClaimError(str(exc)) from None


AUDITS_DIR = "audits"  # RUN_DIR/audits/NAME/record.json: re-audits of the run's model (sandbox.run.reaudit)


def with_reaudits(items: list) -> list:
    """``items`` with, after each run directory, the re-audits kept in it (``RUN_DIR/audits/*/``, sorted):
    the audits of one trained model, judged together."""
    out = []
    for item in items:
        out.append(item)
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            out += sorted(d for d in (Path(item) / AUDITS_DIR).glob("*") if (d / RECORD_FILE).is_file())
    return out


def check_claim(claim: Claim | str | Path, runs) -> ClaimResult:
    """Judge ``claim`` on one model's run record(s): a run directory, a record.json path or a record
    dict, or a list of them.

    A run directory brings its re-audits along (``RUN_DIR/audits/*/``, ``python -m sandbox.audit RUN_DIR
    audit=…``). Several records must be audits of **one trained model** (equal ``model.sha256`` and data
    fingerprint: the run and its re-audits, ``python -m sandbox.audit RUN_DIR OUT_DIR audit=…``), so that LiRA, the canary audit
    and extraction can all speak for it. Each check then takes the strongest evidence: FAIL if
    any record fails it, else PASS if any passes it, else INCONCLUSIVE (a measured reason before
    "not measured"). Each record is verified first (``verify_record``: possible, and the record of
    the model beside it). Raises ``ClaimError`` on bad input; writes nothing.
    """
    claim = claim if isinstance(claim, Claim) else load_claim(claim)
    items = with_reaudits([runs] if isinstance(runs, (str, Path, Mapping)) else list(runs))
    if not items:
        raise ClaimError("no run record given")
    records = [load_record(r) for r in items]
    checked = tuple(f"{r.origin}: {line}" for r in records for line in verify_record(r))
    _require_one_model(records)
    evidence = tuple(
        _strongest([judge_row(check, r, require_control=claim.require_control) for r in records], records)
        for check in claim.checks
    )
    verdicts = {e.verdict for e in evidence} - {NOT_APPLICABLE}  # N/A rows count in no verdict
    verdict = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts or not verdicts else PASS
    dp_bug = any(
        r.run.status == "failed" or (r.run.audit is not None and r.run.audit.result == "dp_bug") for r in records
    )
    return ClaimResult(
        claim=claim,
        verdict=verdict,
        evidence=evidence,
        record=", ".join(r.origin for r in records),
        record_checks=checked,
        dp_bug=dp_bug,
    )


def _require_one_model(records: list[Record]) -> None:
    if len(records) < 2:
        return
    for key in ("model.sha256", "data.fingerprint"):
        values = {}
        for r in records:
            if not r.has(key):
                raise ClaimError(
                    f"{r.origin}: {key}: missing from the record, so it cannot be shown to be the same "
                    "model as the other runs (re-run it with this version)"
                )
            values.setdefault(r.get(key), []).append(r.origin)
        if len(values) > 1:
            groups = "; ".join(f"{v[:12]}…: {', '.join(origins)}" for v, origins in values.items())
            raise ClaimError(
                f"the runs are not one model: {key} differs ({groups}); combine only audits of the "
                "same trained model (a run and its re-audits: python -m sandbox.audit RUN_DIR OUT_DIR audit=…; "
                "with secure noise two DP trainings with one seed are two models)"
            )


def _strongest(rows: list[Evidence], records: list[Record]) -> Evidence:
    """One check's row over several records of one model: FAIL, else PASS, else the best-informed INCONCLUSIVE."""
    if len(rows) == 1:
        return rows[0]
    order = {FAIL: 0, PASS: 1, INCONCLUSIVE: 2, NOT_APPLICABLE: 3}
    best = min(range(len(rows)), key=lambda i: (order[rows[i].verdict], rows[i].reason.startswith(NOT_MEASURED), i))
    row = rows[best]
    where = (
        str(Path(records[best].origin).parent) if records[best].origin.endswith("record.json") else records[best].origin
    )
    return replace(row, source=f"{row.source}; {where}" if row.source else where)


def assert_claim(claim: Claim | str | Path, runs, *, allow_inconclusive: bool = False) -> ClaimResult:
    """For pytest: return the result on PASS; raise AssertionError with the evidence table otherwise.

    ``runs``: as for ``check_claim`` (one run, or several audits of one model)."""
    result = check_claim(claim, runs)
    if result.verdict == PASS or (allow_inconclusive and result.verdict == INCONCLUSIVE):
        return result
    raise AssertionError(f"claim {result.claim.name!r} is {result.verdict}\n\n{result.table()}")


def write_result(result: ClaimResult, run_dir: Path) -> Path:
    """``claim_<name>.json`` in ``run_dir``, atomically (``sandbox.io.write_json``: all or nothing)."""
    path = Path(run_dir) / f"claim_{result.claim.name}.json"
    write_json(path, result.to_dict())
    return path
