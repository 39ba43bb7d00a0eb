"""Typed, error-naming access to the JSON a report reads (record.json, claim_*.json), and how values show."""

from __future__ import annotations

import math


class ReportError(ValueError):
    """A run directory the report cannot read; the message names the file (and the key)."""


_KINDS = {dict: "an object", list: "a list", str: "text", float: "a number", int: "a whole number"}


class Fields:
    """Typed access to a JSON object: ``get("privacy", "epsilon", kind=float)`` is None when absent
    or null, and raises ``ReportError`` naming ``origin`` and the key when of another type."""

    def __init__(self, data: dict, origin: str, prefix: str = ""):
        self.data, self.origin, self.prefix = data, origin, prefix

    def get(self, *path: str, kind: type = object):
        node = self.data
        for part in path:
            if not isinstance(node, dict) or node.get(part) is None:
                return None
            node = node[part]
        return typed(node, kind, f"{self.origin}: {self.prefix}{'.'.join(path)}")

    def sub(self, *path: str) -> Fields | None:
        node = self.get(*path, kind=dict)
        return None if node is None else Fields(node, self.origin, f"{self.prefix}{'.'.join(path)}.")


def typed(value, kind: type, where: str):
    if value is None or kind is object:
        return value
    if kind in (float, int):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value))
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ReportError(f"{where}: expected {_KINDS[kind]}, got {value!r}"[:300])
    return float(value) if kind is float else value


def fmt(value) -> str:
    """A record value as shown: numbers to 4 significant digits, booleans as yes/no."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def fmt_ci(ci) -> str:
    return "—" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def x_key(points: list[dict]) -> str:
    return "round" if any("round" in p for p in points) else "step"
