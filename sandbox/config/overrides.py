"""Audit overrides of a re-audit (``python -m sandbox.audit RUN_DIR [OUT_DIR] audit=NAME audit.KEY=VALUE``).

Only the audit may change: the rest of the config is what trained the model.
"""

from __future__ import annotations

import copy
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException
from omegaconf import OmegaConf

from sandbox.config import CONF_DIR, ConfigError


def _conf_dir() -> Path:
    return Path(CONF_DIR)


def parse_overrides(overrides: list[str]) -> tuple[str | None, list[tuple[str, str, object]]]:
    """(``NAME`` of ``audit=NAME`` or None, [(kind, audit key, value)]) of Hydra-style overrides.

    ``kind`` is ``set`` (``audit.KEY=VALUE``, ``+``/``++`` allowed) or ``delete`` (``~audit.KEY``:
    back to the default). Any key outside ``audit`` raises ``ConfigError`` naming it.
    """
    group, changes = None, []
    for text in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides(overrides=[text])
        except HydraException as exc:
            raise ConfigError(
                f"{text}: not an override (audit=NAME or audit.KEY=VALUE): {str(exc).splitlines()[0]}"
            ) from None
        key = override.key_or_group
        if key != "audit" and not key.startswith("audit."):
            raise ConfigError(
                f"{key}: a re-audit changes only the audit (audit=NAME, audit.KEY=VALUE); "
                f"{key} is part of the trained model's config (RUN_DIR/record.json → config)"
            )
        if override.package is not None:
            raise ConfigError(f"{text}: package overrides (@) are not supported by a re-audit")
        if override.is_sweep_override():
            raise ConfigError(f"{key}: a re-audit runs one audit, not a sweep ({text}); run one per audit")
        if key == "audit":
            value = override.value()
            if override.type != OverrideType.CHANGE or not isinstance(value, str):
                raise ConfigError(f"audit: expected audit=NAME (a file in conf/audit/), got {text!r}")
            group = value
            continue
        kind = "delete" if override.is_delete() else "set"
        changes.append((kind, key[len("audit.") :], None if kind == "delete" else override.value()))
    return group, changes


def audit_group(name: str) -> dict:
    """``conf/audit/NAME.yaml`` as Hydra composes it for ``audit=NAME``."""
    known = sorted(p.stem for p in (_conf_dir() / "audit").glob("*.yaml"))
    if name not in known:
        raise ConfigError(f"audit={name}: no such audit (conf/audit/{name}.yaml); known: {', '.join(known)}")
    with initialize_config_dir(config_dir=str(_conf_dir()), version_base="1.3"):
        composed = compose(config_name="config", overrides=[f"audit={name}"])
    return OmegaConf.to_container(composed.audit, resolve=True)


def audit_config(original: dict, overrides: list[str]) -> dict:
    """The new ``config.audit``: the run's own (or ``audit=NAME``'s group) with the key overrides applied."""
    group, changes = parse_overrides(overrides)
    node = OmegaConf.create(audit_group(group) if group is not None else copy.deepcopy(original or {}))
    for kind, key, value in changes:
        if kind == "delete":
            parent, _, leaf = key.rpartition(".")
            target = OmegaConf.select(node, parent) if parent else node
            if target is None or leaf not in target:
                raise ConfigError(f"audit.{key}: cannot delete, not in the audit config")
            target.pop(leaf)
        else:
            OmegaConf.update(node, key, value, merge=False)
    return OmegaConf.to_container(node, resolve=True)
