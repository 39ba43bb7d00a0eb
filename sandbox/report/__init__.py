"""Reports of runs: ``python -m sandbox.report RUN_DIR`` writes ``report.md`` and a self-contained
``report.html`` (figures embedded as base64 PNGs, inline CSS, no external resources) into the run
directory, plus the figures as ``report_*.png`` beside them.

What the report shows, each from the run directory alone (a section the record lacks is one
"Skipped: …" line):

* first, what a reviewer reads first: one line of verdicts (each claim's, then each audit's) and every
  ``claim_*.json`` (``python -m sandbox.claim``) with its evidence table;
* the run: task, mode, engine, seed, status and the privacy section's ε, δ, unit, accountant,
  sampling (only the fields the record has);
* utility vs baseline (recommenders: recall@k / NDCG@k vs popularity), learning curve with the
  baseline, ε over steps or rounds (private runs);
* the audit: its tables, the log-log ROC from ``audit_scores.npz``, canary exposure;
* every re-audit of the same model (``audits/NAME/``, ``python -m sandbox.audit``), likewise
  (figures ``report_NAME_roc.png``, ...).

Bad input (no directory, no or malformed ``record.json``, unreadable ``audit_scores.npz`` or
``claim_*.json``): ``error: …`` naming the file, exit 3, nothing written.
"""

from sandbox.report.fields import ReportError
from sandbox.report.run_report import Report, RunDir, build_report, load_run, make_report, write_report

__all__ = ["Report", "ReportError", "RunDir", "build_report", "load_run", "make_report", "write_report"]
