"""`python -m sandbox.record --markdown`: docs/record.md (every key of the run record) on stdout."""

from __future__ import annotations

import argparse
import sys

from sandbox.record.schema import markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.record", description=__doc__)
    parser.add_argument("--markdown", action="store_true", required=True, help="print docs/record.md")
    parser.parse_args(argv)
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
