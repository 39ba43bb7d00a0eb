"""The Flower app for `flwr run .`: the ServerApp runs one whole sandbox run on the Grid Flower gives it.

pyproject.toml ``[tool.flwr.app.components]`` points here: ``server_app`` (one run,
``sandbox.run.run``, with ``federation.engine=deployment``) and ``client_app``
(``sandbox.federated.flower_client``). Each client is one SuperNode, its ``partition-id`` node
config the client's index: Flower's simulation gives its simulated SuperNodes partition ids
0 … N − 1 (``flwr run . local``), and ``scripts/flower-deploy`` starts real SuperNodes with them
(the Deployment Engine). SuperNodes beyond the run's clients are left idle; fewer is a clear error.

The run config (``[tool.flwr.app.config]``, overridden by ``flwr run --run-config``) is typed:
``task``, ``privacy``, ``target-epsilon``, ``clients`` (workspace: cross-silo | user: cross-device),
``n-workspaces``, ``n-users``, ``rounds``, then ``overrides`` (any further Hydra overrides, as for
``python -m sandbox``; they win) and ``out-dir`` (``""``: ``$FLWR_HOME/sandbox-runs/RUN_ID``). The
defaults run a small experiment out of the box on the default local simulation federation (2
SuperNodes): 2 workspaces, 3 rounds, workspace-level DP-FedAvg at ε = 8. An entry point: the only
Flower module that imports ``sandbox.run``.
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


# the run config's typed keys → the Hydra overrides they stand for (``overrides`` come after and win)
RUN_CONFIG_DEFAULTS = {
    "task": "emoji",
    "privacy": "dpfedavg",
    "target-epsilon": 8.0,
    "clients": "workspace",
    "n-workspaces": 2,
    "n-users": 100,
    "rounds": 3,
    "overrides": "",
    "out-dir": "",
}


def run_overrides(run_config) -> list[str]:
    """The Hydra overrides of a Flower run config (``RUN_CONFIG_DEFAULTS`` for the keys it lacks)."""
    c = {**RUN_CONFIG_DEFAULTS, **dict(run_config)}
    unknown = sorted(set(c) - set(RUN_CONFIG_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"run config {unknown[0]}: unknown key (known: {', '.join(RUN_CONFIG_DEFAULTS)}; any Hydra key goes "
            "in overrides)"
        )
    clients = str(c["clients"])
    if clients not in ("workspace", "user"):
        raise ConfigError(f"run config clients: must be workspace (cross-silo) or user (cross-device), got {clients!r}")
    out = [
        f"task={c['task']}",
        "mode=federated",
        f"federation={'cross_silo' if clients == 'workspace' else 'cross_device'}",
        f"privacy={c['privacy']}",
        f"data.n_workspaces={int(c['n-workspaces'])}",
        f"data.n_users={int(c['n-users'])}",
        f"federation.rounds={int(c['rounds'])}",
        "progress=false",
    ]
    if str(c["privacy"]) != "none":
        out.append(f"privacy.target_epsilon={float(c['target-epsilon'])}")
    extra = shlex.split(str(c["overrides"]))
    given = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    if given & {"privacy", "privacy.noise_multiplier"}:  # the overrides choose the mechanism or σ: ε is theirs
        given.add("privacy.target_epsilon")
    return [o for o in out if o.split("=", 1)[0] not in given] + extra


def out_dir_of(run_config, run_id: int) -> Path:
    """Run config ``out-dir`` (absolute), or ``$FLWR_HOME/sandbox-runs/RUN_ID`` when it is empty."""
    out_dir = str(dict(run_config).get("out-dir", ""))
    if not out_dir:
        home = Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")
        return home / "sandbox-runs" / str(run_id)
    if not os.path.isabs(out_dir):
        raise ConfigError(f"run config out-dir must be an absolute directory (or empty), got {out_dir!r}")
    return Path(out_dir)


@server_app.main()
def run_deployment(grid: Grid, context: Context) -> None:
    """One whole run (``sandbox.run.run``) on this Grid, configured by the run config (module docstring);
    record.json and model.pt go to ``out_dir_of``."""
    overrides = run_overrides(context.run_config)
    out_dir = out_dir_of(context.run_config, context.run_id)
    hydra_cfg = compose_run_config(overrides)
    cfg = resolve(hydra_cfg)
    if cfg.mode != "federated":
        raise ConfigError("mode: the Deployment Engine runs federated training: add mode=federated")
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("sandbox run: %s → %s", " ".join(overrides), out_dir)
    record = run(cfg, out_dir=out_dir, resolved_config=plain(hydra_cfg), grid=grid)
    log.info(
        "run %s: %d rounds, epsilon %s; record in %s",
        record["status"],
        record["privacy"]["steps"],
        record["privacy"]["epsilon"],
        out_dir,
    )


def count_clients(overrides: list[str], run_config: dict | None = None) -> int:
    """How many clients (= SuperNodes needed) the run has: ``run_config`` (the app's defaults when None)
    with ``overrides`` appended to its own."""
    config = dict(RUN_CONFIG_DEFAULTS if run_config is None else run_config)
    config["overrides"] = " ".join([str(config.get("overrides", "")), *map(shlex.quote, overrides)]).strip()
    cfg = resolve(compose_run_config(run_overrides(config)))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    return len(partition_clients(data.corpus, data.train, unit=cfg.federation.unit))
