"""`python -m sandbox [overrides]`: one training run (or a sweep with `-m`), configured by Hydra.

Bad configuration or data stops with ``error: ...`` on stderr and exit code 2, no
traceback, and no ``record.json`` (a record only exists for a run that completed). An audit
that finds a probable DP bug writes its record (status ``failed``) and exits 1, loudly.
With ``claim=NAME`` the finished run is checked against ``conf/claim/NAME.yaml`` and a
single run exits with the claim's code: 0 PASS, 1 FAIL, 2 INCONCLUSIVE.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sandbox.config import ConfigError, resolve
from sandbox.data import CorpusError
from sandbox.privacy import AccountingError, PrivacyInputError
from sandbox.privacy.ledger import LedgerError
from sandbox.tracking import TrackingError
from sandbox.summary import describe_run

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from sandbox.audit.harness import ProbableDPBug
    from sandbox.run import run  # torch/opacus import after Hydra has parsed the command line

    logging.getLogger("opacus").setLevel(logging.WARNING)  # per-layer INFO lines on every run

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_cfg = resolve(cfg)
        record = run(run_cfg, out_dir=out_dir, resolved_config=OmegaConf.to_container(cfg, resolve=True))
    except (ConfigError, CorpusError, PrivacyInputError, AccountingError, LedgerError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ProbableDPBug as exc:  # the record is written (status "failed") so the evidence stays
        print(f"\n*** {exc} ***\nrecord: {out_dir / 'record.json'}", file=sys.stderr)
        sys.exit(1)
    print(describe_run(record, out_dir))
    claim = HydraConfig.get().runtime.choices.get("claim")
    if claim:
        sys.exit(_check_claim(claim, out_dir, single_run=HydraConfig.get().mode == RunMode.RUN))


def _check_claim(name: str, out_dir: Path, *, single_run: bool) -> int:
    """``claim=NAME``: the claim's evidence table and verdict for this run (``sandbox.claim``).

    A single run exits 0 PASS, 1 FAIL, 2 INCONCLUSIVE (as ``python -m sandbox.claim``); in a
    sweep every run is checked and the sweep goes on (each verdict is in claim_NAME.json).
    """
    from sandbox.claim import ClaimError, check_claim, write_result

    try:
        result = check_claim(name, out_dir)
        written = write_result(result, out_dir)
    except ClaimError as exc:
        print(f"error: claim={name}: {exc}", file=sys.stderr)
        return 2 if single_run else 0
    print(f"\nclaim {name}:\n{result.table()}\nwritten: {written}")
    return result.exit_code if single_run else 0


if __name__ == "__main__":
    main()
