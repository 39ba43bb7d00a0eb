"""`python -m sandbox.report RUN_DIR`: report.md, report.html and report_*.png in RUN_DIR.

Exit 0 on success; 3 on bad input (one ``error: …`` line on stderr naming the file, no traceback,
nothing written; ``sandbox.cli``).
"""

from __future__ import annotations

import argparse
import sys

from sandbox.cli import Exit, fail, run_main
from sandbox.report import ReportError, make_report


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors are bad input too: exit 3
        self.print_usage(sys.stderr)
        sys.exit(fail(message, Exit.BAD_INPUT))


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m sandbox.report",
        description=("Write report.md and a self-contained report.html (plots embedded) for one run directory."),
    )
    parser.add_argument("run_dir", help="a run directory holding record.json")
    args = parser.parse_args(argv)
    try:
        written = make_report(args.run_dir)
    except (ReportError, OSError) as exc:
        return fail(str(exc))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    run_main(main)
