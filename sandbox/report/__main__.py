"""`python -m sandbox.report RUN_DIR`: report.md, report.html and report_*.png in RUN_DIR.

Exit 0 on success; 2 on bad input (message on stderr naming the file, no traceback, nothing written).
"""

from __future__ import annotations

import argparse
import sys

from sandbox.report import ReportError, make_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.report", description=(
        "Write report.md and a self-contained report.html (plots embedded) for one run directory."))
    parser.add_argument("run_dir", help="a run directory holding record.json")
    args = parser.parse_args(argv)  # usage errors exit 2 as well
    try:
        written = make_report(args.run_dir)
    except (ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
