"""`python -m sandbox.claim CLAIM RUN_DIR`: the evidence table and verdict; exit 0 PASS, 1 FAIL,
2 INCONCLUSIVE, 3 bad input (message on stderr, no traceback, nothing written)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.claim import EXIT_BAD_INPUT, ClaimError, check_claim, write_result


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors are bad input too: exit 3, not argparse's 2 (INCONCLUSIVE)
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m sandbox.claim", description=(
        "Check a product claim against a run record. Exit codes: 0 PASS, 1 FAIL, 2 INCONCLUSIVE, "
        "3 bad input (nothing written)."))
    parser.add_argument("claim", help="a claim file, or the name of one in conf/claim/")
    parser.add_argument("run_dir", help="the run directory (holding record.json) or a record.json")
    args = parser.parse_args(argv)
    try:
        result = check_claim(args.claim, args.run_dir)
        run_dir = Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(args.run_dir).parent
        written = write_result(result, run_dir)
    except (ClaimError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{result.table()}\nwritten: {written}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
