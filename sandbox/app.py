"""The Flower app for `flwr run .` (Deployment Engine): the ServerApp runs one whole sandbox run.

pyproject.toml ``[tool.flwr.app.components]`` points here: ``server_app`` (one run,
``sandbox.run.run``, with ``federation.engine=deployment``, on the Grid Flower gives it) and
``client_app`` (``sandbox.federated.flower_client``). One SuperNode per client, its
``partition-id`` node config = the client index; ``scripts/flower-deploy`` starts a local
SuperLink and SuperNodes and runs it. An entry point: the only Flower module that imports
``sandbox.run``.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from hydra import compose, initialize_config_dir

from sandbox.config import CONF_DIR, ConfigError, plain, resolve
from sandbox.federated import flower_client
from sandbox.federated.clients import partition_clients
from sandbox.prepare import Seeds, prepare
from sandbox.run import run

log = logging.getLogger("flwr")

# the app's ClientApp component (pyproject.toml): an assignment here, as Flower's config check reads it
client_app = flower_client.client_app


def compose_run_config(overrides: list[str]):
    """The Hydra config for ``overrides`` (as on the command line), with the deployment engine."""
    engine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "federation.engine"]
    if engine and engine != ["federation.engine=deployment"]:
        raise ConfigError(f"federation.engine: a deployment run is engine 'deployment', got {engine[0]!r}")
    if not engine:
        overrides = [*overrides, "federation.engine=deployment"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


server_app = ServerApp()


@server_app.main()
def run_deployment(grid: Grid, context: Context) -> None:
    """One whole run (``sandbox.run.run``) on this Grid; record.json and model.pt go to run-config ``out-dir``.

    Run config: ``overrides`` (Hydra overrides, space-separated, as for ``python -m sandbox``)
    and ``out-dir`` (an absolute directory, created if needed).
    """
    overrides = shlex.split(str(context.run_config.get("overrides", "")))
    out_dir = str(context.run_config.get("out-dir", ""))
    if not os.path.isabs(out_dir):
        raise ConfigError(f"run config out-dir must be an absolute directory, got {out_dir!r}")
    hydra_cfg = compose_run_config(overrides)
    cfg = resolve(hydra_cfg)
    if cfg.mode != "federated":
        raise ConfigError("mode: the Deployment Engine runs federated training: add mode=federated")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    record = run(cfg, out_dir=Path(out_dir), resolved_config=plain(hydra_cfg), grid=grid)
    log.info(
        "run %s: %d rounds, epsilon %s; record in %s",
        record["status"],
        record["privacy"]["steps"],
        record["privacy"]["epsilon"],
        out_dir,
    )


def count_clients(overrides: list[str]) -> int:
    """How many clients (= SuperNodes needed) the run configured by ``overrides`` has."""
    cfg = resolve(compose_run_config(overrides))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    return len(partition_clients(data.corpus, data.train, unit=cfg.federation.unit))
