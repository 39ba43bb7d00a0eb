"""Hydra's ConfigStore: the schemas of ``sandbox.config.schema`` under ``schema/``, and the config directory.

Every YAML file of ``sandbox/conf`` starts from its schema through its defaults list
(``- /schema/privacy@_here_``), Hydra's "structured config as schema" pattern: a typo'd key or a
mistyped value, in a file or on the command line, is refused when the config is composed, and
the dataclass defaults are the only defaults (a YAML file sets what differs from them).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from sandbox.config import schema

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # package data: sandbox/conf

# name under schema/ -> the dataclass; the YAML files use `- /schema/NAME@_here_`
SCHEMAS = {
    "config": schema.SandboxConfig,
    "train": schema.TrainConfig,
    "privacy": schema.PrivacyConfig,
    "federation": schema.FederationConfig,
    "audit": schema.AuditConfig,
    "data_synthetic": schema.SyntheticData,
    "data_files": schema.FilesData,
}


def _writable(node):
    """A structured node of a frozen dataclass is read-only; Hydra must merge and override it."""
    OmegaConf.set_readonly(node, None)  # unset: inherit the parent's (not read-only)
    if isinstance(node, DictConfig) and not (node._is_missing() or node._is_none()):
        for key in node.keys():
            _writable(node._get_node(key))
    elif isinstance(node, ListConfig) and not (node._is_missing() or node._is_none()):
        for index in range(len(node)):
            _writable(node._get_node(index))
    return node


def schema_node(cls) -> DictConfig:
    """The schema of ``cls`` as Hydra stores it: typed, struct, writable."""
    return _writable(OmegaConf.structured(cls))


def register() -> ConfigStore:
    """Store every schema (idempotent: the same nodes under the same names)."""
    store = ConfigStore.instance()
    for name, cls in SCHEMAS.items():
        store.store(group="schema", name=name, node=schema_node(cls), provider="sandbox")
    return store
