"""`python -m sandbox.audit RUN_DIR [OUT_DIR] [audit=NAME] [audit.KEY=VALUE ...]`: audit a trained model again.

The model in RUN_DIR (its record.json, model.pt and trained_users.npy) is audited with another
audit config; OUT_DIR (default ``RUN_DIR/audits/ATTACK``) gets a record of the same model (same
``model.sha256``) with the new ``audit`` section; RUN_DIR's own files are never rewritten (see
``sandbox.run.reaudit``). Exit codes (``sandbox.cli``): 0 done (the summary is printed), 3 bad
input (``error: ...`` naming the key or file, no traceback, nothing written), 4 the audit found
a probable DP bug (the record is written, status ``failed``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sandbox.cli import Exit, fail


def _split(rest: list[str]) -> tuple[str | None, list[str]]:
    """OUT_DIR (the first argument when it is not an override) and the overrides."""
    if rest and "=" not in rest[0] and not rest[0].startswith(("~", "+")):
        return rest[0], rest[1:]
    return None, rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.audit",
        description=(
            "Audit the trained model of RUN_DIR again, with another audit config, into OUT_DIR (default "
            "RUN_DIR/audits/ATTACK). Overrides may change only the audit: audit=NAME, audit.KEY=VALUE. Exit codes: "
            "0 done, 3 bad input (nothing written), 4 probable DP bug (record written)."
        ),
    )
    parser.add_argument("run_dir", help="the run directory (record.json, model.pt, trained_users.npy)")
    parser.add_argument(
        "rest",
        nargs="*",
        metavar="[OUT_DIR] OVERRIDE",
        help="optional OUT_DIR (a new or empty directory), then audit=NAME, audit.KEY=VALUE",
    )
    args = parser.parse_args(argv)
    out_dir, overrides = _split(args.rest)

    # lazy: torch, opacus and the audits load after the command line is parsed (--help stays instant)
    from sandbox.audit.harness import ProbableDPBug
    from sandbox.config import ConfigError
    from sandbox.data import CorpusError
    from sandbox.privacy import AccountingError, PrivacyInputError
    from sandbox.privacy.ledger import LedgerError
    from sandbox.run import ReauditError, reaudit
    from sandbox.summary import describe_run

    logging.getLogger("opacus").setLevel(logging.WARNING)
    try:
        record = reaudit(args.run_dir, out_dir, overrides)
    except (ConfigError, ReauditError, CorpusError, PrivacyInputError, AccountingError, LedgerError) as exc:
        return fail(str(exc))
    except ProbableDPBug as exc:  # the record is written (status "failed") so the evidence stays
        print(f"\n*** {exc} ***\nrecord: {out_dir or Path(args.run_dir) / 'audits'}", file=sys.stderr)
        return int(Exit.DP_BUG)
    where = Path(record["reaudit_of"]["out_dir"]) if "out_dir" in record.get("reaudit_of", {}) else None
    print(f"re-audit of {args.run_dir} (model {record['model']['sha256'][:12]}…)")
    print(describe_run(record, where or Path(args.run_dir)))
    return int(Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
