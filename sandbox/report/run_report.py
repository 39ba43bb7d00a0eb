"""One run directory → ``report.md``, a self-contained ``report.html`` and ``report_*.png``.

``load_run`` reads everything first (``record.json`` as a typed ``sandbox.record.RunRecord``,
partial: a section it lacks is skipped, a value of the wrong type is bad input; ``audit_scores.npz``,
``claim_*.json``) and raises ``ReportError`` naming the file on bad input; ``build_report`` is pure;
``write_report`` writes each output atomically (``sandbox.io``) and, if one write fails, removes
the ones it wrote, so a failed report leaves nothing behind.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox.io import write_bytes
from sandbox.record import RecordError, RunRecord, load
from sandbox.report import audit_section, sections
from sandbox.report.document import Block, Figure, Heading, render_html, render_markdown
from sandbox.report.fields import Fields, ReportError

RECORD = "record.json"
SCORES = "audit_scores.npz"


@dataclass(frozen=True)
class RunDir:
    """What a report reads from a run directory, already parsed."""

    path: Path
    record: RunRecord | dict  # a dict is read as a partial RunRecord
    scores: dict = field(default_factory=dict)  # curve name → (scores, members), from audit_scores.npz
    scores_file: str = SCORES
    claims: tuple[tuple[Path, dict], ...] = ()
    reaudits: tuple[tuple[str, RunDir], ...] = ()  # audits/NAME/ of the same model (python -m sandbox.audit)


@dataclass(frozen=True)
class Report:
    title: str
    blocks: tuple[Block, ...]

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]

    def markdown(self) -> str:
        return render_markdown(self.title, list(self.blocks))

    def html(self) -> str:
        return render_html(self.title, list(self.blocks))


def _read_json(path: Path, what: str) -> dict:
    """A claim result (``claim_*.json``: not a run record) as a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReportError(f"{path}: not a readable JSON {what}: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: a {what} must be a JSON object, got {type(data).__name__}")
    return data


def load_run(run_dir: str | Path) -> RunDir:
    """Read a run directory; ``ReportError`` (naming the file) when it cannot be reported on."""
    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"{path}: no such run directory")
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (give the run directory that holds {RECORD})")
    record_path = path / RECORD
    try:
        record = load(path, partial=True)
    except RecordError as exc:
        raise ReportError(str(exc)) from None
    r = Fields(record.to_json(), str(record_path))
    name = Path(r.get("audit", "scores_file", kind=str) or SCORES).name  # a file beside the record, never elsewhere
    scores = {}
    if r.get("audit") is not None and (path / name).is_file():
        try:
            with np.load(path / name, allow_pickle=False) as npz:
                scores = audit_section.scores_from_npz(npz, str(path / name))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ReportError(f"{path / name}: not a readable scores file: {exc}") from None
    reaudits = tuple(
        (sub.name, load_run(sub)) for sub in sorted((path / "audits").glob("*")) if (sub / RECORD).is_file()
    )
    claims = []
    for claim_path in sorted(path.glob("claim_*.json")):
        data = _read_json(claim_path, "claim result")
        Fields(data, str(claim_path)).get("verdict", kind=str)  # type checks that name the file
        Fields(data, str(claim_path)).get("evidence", kind=list)
        claims.append((claim_path, data))
    return RunDir(path=path, record=record, scores=scores, scores_file=name, claims=tuple(claims), reaudits=reaudits)


def build_report(run: RunDir) -> Report:
    """The report's blocks, in order: what a reviewer reads first (the verdicts, then each claim's evidence
    table), then the run (header, utility, learning curve, ε), its audit, and every re-audit of the same
    model (``audits/NAME/``)."""
    record = (
        run.record
        if isinstance(run.record, RunRecord)
        else RunRecord.from_json(run.record, origin=str(run.path / RECORD), partial=True)
    )
    r = Fields(record.to_json(), str(run.path / RECORD))
    named = [v for v in (r.get("task"), r.get("mode"), r.get("privacy", "mechanism")) if v is not None]
    title = f"Run report: {' · '.join(map(str, named))}" if named else f"Run report: {run.path.name}"
    claims = list(run.claims)
    reaudits = []
    for name, sub in run.reaudits:
        sr = Fields(sub.record.to_json() if isinstance(sub.record, RunRecord) else sub.record, str(sub.path / RECORD))
        reaudits.append((name, sr, sub))
    blocks = [
        *sections.verdict_line(r, claims, [(name, sr) for name, sr, _ in reaudits]),
        *sections.claims(claims),
        Heading("The run"),
        *sections.header(r, run.path),
        *sections.utility(r),
        *sections.learning_curve(r),
        *sections.epsilon_curve(r),
        *audit_section.audit(r, run.scores, run.scores_file),
    ]
    for name, sr, sub in reaudits:
        blocks += audit_section.audit(
            sr,
            sub.scores,
            f"audits/{name}/{sub.scores_file}",
            title=f"Re-audit of this model: {name}",
            prefix=f"{name}_",
        )
    return Report(title=title, blocks=tuple(blocks))


def write_report(run_dir: Path, report: Report) -> list[Path]:
    """Write ``report_*.png``, ``report.md`` and ``report.html`` into ``run_dir``, each atomically
    (``sandbox.io.write_bytes``; all rendered first); if a write fails, the files written so far are
    removed. Earlier ``report_*.png`` this report no longer draws are removed."""
    files = {f.name: f.png for f in report.figures}
    files["report.md"] = report.markdown().encode("utf-8")
    files["report.html"] = report.html().encode("utf-8")
    written: list[Path] = []
    try:
        for name, data in files.items():
            write_bytes(run_dir / name, data)
            written.append(run_dir / name)
    except BaseException:
        for dest in written:
            dest.unlink(missing_ok=True)
        raise
    for stale in {p.name for p in run_dir.glob("report_*.png")} - set(files):
        (run_dir / stale).unlink(missing_ok=True)
    return written


def make_report(run_dir: str | Path) -> list[Path]:
    """Read, build and write the report of ``run_dir``; returns the files written."""
    run = load_run(run_dir)
    return write_report(run.path, build_report(run))
