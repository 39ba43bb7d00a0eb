"""One convention for every command-line tool: exit codes and error messages.

==== ===================================================================
code meaning
==== ===================================================================
0    success; for a claim check: PASS
1    the claim FAILs
2    INCONCLUSIVE (the evidence cannot decide)
3    bad input: a config key, a file, a record that cannot be used (message names it)
4    probable DP bug: an audit measured more leakage than the accounted ε permits
==== ===================================================================

Errors are printed once, as ``error: <message>`` on stderr, with no traceback.
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Callable


class Exit(enum.IntEnum):
    OK = 0
    FAIL = 1
    INCONCLUSIVE = 2
    BAD_INPUT = 3
    DP_BUG = 4


VERDICT_EXIT = {"PASS": Exit.OK, "FAIL": Exit.FAIL, "INCONCLUSIVE": Exit.INCONCLUSIVE}


def verdict_exit(verdict: str) -> Exit:
    """The exit code of a claim verdict (PASS / FAIL / INCONCLUSIVE)."""
    return VERDICT_EXIT[verdict]


def fail(message: str, code: Exit = Exit.BAD_INPUT) -> int:
    """Print ``error: message`` on stderr and return ``code`` (for ``return fail(...)`` in a ``main``)."""
    print(f"error: {message}", file=sys.stderr)
    return int(code)


def run_main(main: Callable[[], int | None], *, bad_input: tuple[type[BaseException], ...] = ()) -> None:
    """``sys.exit(main())``, turning the listed exception types into a one-line error and exit 3."""
    try:
        code = main()
    except bad_input as exc:
        code = fail(str(exc))
    sys.exit(int(code or 0))


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are bad input: one ``error:`` line (after the usage) and exit 3, not
    argparse's 2 (which here means INCONCLUSIVE). Subparsers inherit the class."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(Exit.BAD_INPUT)
