"""`python -m sandbox.audit RUN_DIR OUT_DIR [audit=NAME] [audit.KEY=VALUE ...]`: audit a trained model again.

The model in RUN_DIR (its record.json, model.pt and trained_users.npy) is audited with another
audit config, and OUT_DIR gets a record of the same model (same ``model.sha256``) with the new
``audit`` section; see ``sandbox.audit.rerun``. Exit codes as ``python -m sandbox``: 0 done (the
run's summary is printed), 2 bad input (``error: ...`` naming the key or file, no traceback,
nothing written), 1 the audit found a probable DP bug (the record is written, status ``failed``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.audit", description=(
        "Audit the trained model of RUN_DIR again, with another audit config, into OUT_DIR. Overrides may "
        "change only the audit: audit=NAME (conf/audit/NAME.yaml), audit.KEY=VALUE. Exit codes: 0 done, "
        "1 probable DP bug (record written), 2 bad input (nothing written)."))
    parser.add_argument("run_dir", help="the run directory (record.json, model.pt, trained_users.npy)")
    parser.add_argument("out_dir", help="where the re-audit's record goes: a new or empty directory")
    parser.add_argument("overrides", nargs="*", help="audit=NAME, audit.KEY=VALUE (Hydra syntax)")
    args = parser.parse_args(argv)

    from sandbox.audit.harness import ProbableDPBug  # torch/opacus import after the command line is parsed
    from sandbox.audit.rerun import ReauditError, reaudit
    from sandbox.config import ConfigError
    from sandbox.data import CorpusError
    from sandbox.privacy import AccountingError, PrivacyInputError
    from sandbox.privacy.ledger import LedgerError
    from sandbox.summary import describe_run

    logging.getLogger("opacus").setLevel(logging.WARNING)
    out_dir = Path(args.out_dir)
    try:
        record = reaudit(args.run_dir, out_dir, args.overrides)
    except (ConfigError, ReauditError, CorpusError, PrivacyInputError, AccountingError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProbableDPBug as exc:  # the record is written (status "failed") so the evidence stays
        print(f"\n*** {exc} ***\nrecord: {out_dir / 'record.json'}", file=sys.stderr)
        return 1
    print(f"re-audit of {args.run_dir} (model {record['model']['sha256'][:12]}…)")
    print(describe_run(record, out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
