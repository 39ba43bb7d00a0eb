"""Reports of runs: ``python -m sandbox.report RUN_DIR`` writes ``report.md`` and a self-contained
``report.html`` (figures embedded as base64 PNGs, inline CSS, no external resources) into the run
directory, plus the figures as ``report_*.png`` beside them.

What the report shows, each from the run directory alone (a section the record lacks is one
"Skipped: …" line):

* header: task, mode, engine, seed, status and the privacy section's ε, δ, unit, accountant,
  sampling (only the fields the record has);
* utility vs baseline (recommenders: recall@k / NDCG@k vs popularity), learning curve with the
  baseline, ε over steps or rounds (private runs);
* the audit: its tables, the log-log ROC from ``audit_scores.npz``, canary exposure;
* every ``claim_*.json`` (``python -m sandbox.claim``): verdict and evidence table.

Bad input (no directory, no or malformed ``record.json``, unreadable ``audit_scores.npz`` or
``claim_*.json``): ``error: …`` naming the file, exit 3, nothing written.
"""

from sandbox.report.fields import ReportError
from sandbox.report.run_report import Report, RunDir, build_report, load_run, make_report, write_report

__all__ = ["Report", "ReportError", "RunDir", "build_report", "load_run", "make_report", "write_report"]
