"""`python -m sandbox [overrides]`: one training run (or a sweep with `-m`), configured by Hydra.

Bad configuration or data stops with ``error: ...`` on stderr and exit code 2, no
traceback, and no ``record.json`` (a record only exists for a run that completed). An audit
that finds a probable DP bug writes its record (status ``failed``) and exits 1, loudly.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sandbox.config import ConfigError, resolve
from sandbox.data import CorpusError
from sandbox.privacy import AccountingError, PrivacyInputError
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
    except (ConfigError, CorpusError, PrivacyInputError, AccountingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ProbableDPBug as exc:  # the record is written (status "failed") so the evidence stays
        print(f"\n*** {exc} ***\nrecord: {out_dir / 'record.json'}", file=sys.stderr)
        sys.exit(1)
    print(describe_run(record, out_dir))


if __name__ == "__main__":
    main()
