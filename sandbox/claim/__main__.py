"""`python -m sandbox.claim CLAIM RUN_DIR [RUN_DIR ...]`: the evidence table and verdict; exit 0 PASS,
1 FAIL, 2 INCONCLUSIVE, 3 bad input (message on stderr, no traceback, nothing written), 4 probable DP
bug (a record's audit says ``result: dp_bug``); ``sandbox.cli``.

Several RUN_DIRs are audits of one model (a run and its re-audits, ``python -m sandbox.audit``; checked by the
records' model fingerprints); the verdict is written into each of them."""

from __future__ import annotations

from pathlib import Path

from sandbox.claim import ClaimError, check_claim, write_result
from sandbox.cli import ArgumentParser as _Parser
from sandbox.cli import fail, run_main


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m sandbox.claim",
        description=(
            "Check a product claim against a run record. Exit codes: 0 PASS, 1 FAIL, 2 INCONCLUSIVE, "
            "3 bad input (nothing written), 4 probable DP bug (the audit's result is dp_bug)."
        ),
    )
    parser.add_argument("claim", help="a claim file, or the name of one in conf/claim/")
    parser.add_argument(
        "run_dir",
        nargs="+",
        help="the run directory (holding record.json; its re-audits in RUN_DIR/audits/ come along) or a "
        "record.json; several: audits of one model (a run and its re-audits)",
    )
    args = parser.parse_args(argv)
    try:
        result = check_claim(args.claim, args.run_dir)
        dirs = [Path(d) if Path(d).is_dir() else Path(d).parent for d in args.run_dir]
        written = [write_result(result, d) for d in dict.fromkeys(dirs)]
    except (ClaimError, OSError) as exc:
        return fail(str(exc))
    print(f"{result.table()}\nwritten: {', '.join(map(str, written))}")
    return result.exit_code


if __name__ == "__main__":
    run_main(main)
