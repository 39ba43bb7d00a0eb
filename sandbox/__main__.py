"""`python -m sandbox [overrides]` (or `sandbox`): one training run (or a sweep with `-m`), configured by Hydra.

Exit codes follow ``sandbox.cli``: 0 success (with ``claim=NAME``: PASS), 1 FAIL, 2 INCONCLUSIVE,
3 bad input or config, 4 probable DP bug.

* A bad config (a key the schema does not know, a mistyped value, a value ``sandbox.config.resolve``
  refuses) or bad data stops with one ``error: <key>: ...`` line on stderr, no traceback, exit 3,
  and no ``record.json`` (a record only exists for a run that completed).
* An audit that finds a probable DP bug writes its record (status ``failed``) and exits 4, loudly.
* With ``claim=NAME`` the finished run is checked against ``sandbox/conf/claim/NAME.yaml`` and a
  single run exits with the claim's code: 0 PASS, 1 FAIL, 2 INCONCLUSIVE (3: the claim cannot be
  checked). In a sweep (``-m``) every run is checked, each verdict is written (claim_NAME.json)
  and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sandbox.cli import Exit
from sandbox.config import CONF_DIR, ConfigError, explain, plain, register, resolve
from sandbox.config.help import help_text
from sandbox.data import CorpusError
from sandbox.privacy.errors import AccountingError, LedgerError, PrivacyInputError
from sandbox.summary import describe_run
from sandbox.tracking import TrackingError

__all__ = ["CONF_DIR", "main"]

BAD_INPUT = (ConfigError, CorpusError, PrivacyInputError, AccountingError, LedgerError, TrackingError)


_codes: list[int] = []  # the exit codes of this process's runs (Hydra drops a task function's return value)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _run(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    single_run = HydraConfig.get().mode == RunMode.RUN
    try:
        run_cfg = resolve(cfg)  # a bad value is refused here, before torch and opacus are imported
    except BAD_INPUT as exc:
        raise SystemExit(_error(exc)) from None
    from sandbox.audit.harness import ProbableDPBug
    from sandbox.run import run  # torch, opacus (and flwr) import here: seconds

    logging.getLogger("opacus").setLevel(logging.WARNING)  # per-layer INFO lines on every run
    try:
        record = run(run_cfg, out_dir=out_dir, resolved_config=plain(cfg))
    except BAD_INPUT as exc:
        raise SystemExit(_error(exc)) from None  # a sweep stops too (SystemExit passes through Hydra)
    except ProbableDPBug as exc:  # the record is written (status "failed") so the evidence stays;
        print(f"\n*** {exc} ***\nrecord: {out_dir / 'record.json'}", file=sys.stderr)  # a sweep goes on
        _codes.append(Exit.DP_BUG)
        return
    print(describe_run(record, out_dir))
    claim = HydraConfig.get().runtime.choices.get("claim")
    _codes.append(_check_claim(claim, out_dir, single_run=single_run) if claim else Exit.OK)


def _error(exc: BaseException) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return Exit.BAD_INPUT


def _check_claim(name: str, out_dir: Path, *, single_run: bool) -> int:
    """``claim=NAME``: the claim's evidence table and verdict for this run (``sandbox.claim``).

    A single run returns 0 PASS, 1 FAIL, 2 INCONCLUSIVE, 3 when the claim cannot be checked (as
    ``python -m sandbox.claim``); in a sweep every run is checked and the sweep goes on (0).
    """
    from sandbox.claim import ClaimError, check_claim, write_result

    try:
        result = check_claim(name, out_dir)
        written = write_result(result, out_dir)
    except ClaimError as exc:
        print(f"error: claim={name}: {exc}", file=sys.stderr)
        return Exit.BAD_INPUT if single_run else Exit.OK
    print(f"\nclaim {name}:\n{result.table()}\nwritten: {written}")
    return result.exit_code if single_run else Exit.OK


# Hydra's mutually exclusive flags (hydra._internal.utils.get_args_parser), short and long -> one name
_EXCLUSIVE = {
    "-r": "run",
    "--run": "run",
    "-m": "multirun",
    "--multirun": "multirun",
    "-c": "cfg",
    "--cfg": "cfg",
    "-i": "info",
    "--info": "info",
    "-sc": "shell_completion",
    "--shell-completion": "shell_completion",
}


def _help(overrides: list[str]) -> int:
    """``--help`` (``sandbox.config.help``): the groups one line each and the composed config; exit 0."""
    try:
        print(help_text(overrides))
    except BAD_INPUT as exc:
        return _error(exc)
    except Exception as exc:  # an override Hydra cannot compose: named as in a run
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if not isinstance(exc, (HydraException, OmegaConfBaseException)):
            raise
        return _error(explain(exc))
    return Exit.OK


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sandbox`` command: Hydra's command line (``argv``, default ``sys.argv[1:]``) → exit code.

    Hydra reports a config it cannot compose (an unknown key, a value the schema refuses, an
    unknown group option) with its own message and exit 1; here it is one ``error:`` line, exit 3.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if ("--help" in args or "-h" in args) and "--hydra-help" not in args:
        return _help([a for a in args if a not in ("--help", "-h")])
    modes = [a for a in args if a.partition("=")[0] in _EXCLUSIVE]
    if len({_EXCLUSIVE[m.partition("=")[0]] for m in modes}) > 1:  # Hydra raises a bare ValueError
        return _error(
            f"{' and '.join(modes)}: Hydra takes only one of --run, --multirun (-m), --cfg (-c), --info and "
            "--shell-completion (-sc); to see a sweep's config, print one job's: drop -m and give one value"
        )
    register()
    _codes.clear()
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [saved_argv[0] if saved_argv else "sandbox", *(sys.argv[1:] if argv is None else argv)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting 1
    try:
        _run()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else Exit.BAD_INPUT
    except BAD_INPUT as exc:
        return _error(exc)
    except Exception as exc:  # composition: Hydra's and OmegaConf's errors name the key
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if not isinstance(exc, (HydraException, OmegaConfBaseException)):
            raise
        return _error(explain(exc))
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    # a single run: its code; a sweep: 4 when a run found a probable DP bug (the others went on), else 0
    return Exit.DP_BUG if Exit.DP_BUG in _codes else (int(_codes[0]) if len(_codes) == 1 else Exit.OK)


if __name__ == "__main__":
    sys.exit(main())
