"""``python -m sandbox --help``: the config groups, one line each, and the config the command line composes.

Hydra's own ``--help`` lists every group's options by building a config repository per group (125 of
them here, each a deep copy of the ConfigStore's schemas): 7 s of a 10 s start on this machine. This
lists the groups from the config directory instead and composes the config once (Hydra's compose
API, so the overrides on the command line are applied and checked as in a run). ``--hydra-help``
stays Hydra's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sandbox.config.store import CONF_DIR, register

# one line per config group of sandbox/conf (a test checks that every group has one and no other)
GROUPS = {
    "task": "what the model suggests, and the model: the Task class (task._target_) and its keys",
    "data": "the corpus: generated (synthetic, personal: users with personal content) or your own files",
    "train": "central training: optimizer, epochs, batch size (dpsgd: the DP-SGD defaults)",
    "privacy": "the mechanism and its unit, ε or σ, δ, clip norm, accountant, noise source",
    "federation": "federated training (mode=federated): engine, rounds, client sampling, server optimizer",
    "audit": "the attack run on the trained model or pipeline, its control and statistics",
    "claim": "a promise (sandbox/conf/claim/NAME.yaml) checked against the run when it ends",
    "experiment": "a whole experiment (with -m: its sweep); +experiment=NAME",
    "variant": "one run of an experiment's sweep (+variant/EXPERIMENT=NAME), set by the experiment",
}

USAGE = """\
usage: python -m sandbox [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job] [--hydra-help]

One training run configured by Hydra (with -m, a sweep over comma-separated values). Every key,
its type and default is in sandbox/config/schema.py; a key or value it does not know is refused
before anything is built. Exit codes: 0 success (claim=NAME: PASS), 1 FAIL, 2 INCONCLUSIVE,
3 bad input or config, 4 probable DP bug."""


def _defaults(conf: Path) -> dict[str, str]:
    """group -> the option config.yaml selects (``null`` for none)."""
    out = {}
    for entry in OmegaConf.to_container(OmegaConf.load(conf / "config.yaml")).get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                out[str(group)] = "null" if option is None else str(option)
    return out


def group_options(conf: Path | str = CONF_DIR) -> dict[str, list[str]]:
    """Every config group under ``conf`` (nested ones as ``variant/NAME``) -> its options, sorted."""
    conf = Path(conf)
    groups: dict[str, list[str]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        rel = path.relative_to(conf)
        if len(rel.parts) > 1:
            groups.setdefault(str(rel.parent.as_posix()), []).append(path.stem)
    return groups


def group_lines(conf: Path | str = CONF_DIR) -> list[str]:
    """One line per top-level group: its options (the default starred; nested groups by name) and what
    it chooses."""
    conf = Path(conf)
    defaults, options = _defaults(conf), group_options(conf)
    lines = []
    for group, text in GROUPS.items():
        names = options.get(group) or sorted(g.partition("/")[2] for g in options if g.startswith(group + "/"))
        default = defaults.get(group)
        shown = [f"{n}*" if n == default else n for n in names] + (["null*"] if default == "null" else [])
        lines.append(f"  {group:<11}{' | '.join(shown)}: {text}")
    return lines


def help_text(overrides: Sequence[str] = ()) -> str:
    """The whole ``--help`` text: usage, the groups, and the config ``overrides`` compose (as YAML)."""
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return "\n".join(
        [
            USAGE,
            "",
            "== Config groups (GROUP=OPTION; * the default) ==",
            *group_lines(),
            "",
            "== Config" + (f" (with {' '.join(overrides)})" if overrides else "") + " ==",
            "Override any key with KEY=VALUE (e.g. privacy.target_epsilon=4 federation.rounds=50)",
            "",
            OmegaConf.to_yaml(cfg, resolve=False).rstrip(),
        ]
    )
