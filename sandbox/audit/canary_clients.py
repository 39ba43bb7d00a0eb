"""Placeholder: being written (issue 15)."""

from __future__ import annotations


def run_canary_client_audit(cfg, data, outcome, *, out_dir, privacy) -> dict:
    raise NotImplementedError("audit=canary_clients is being written (issue 15)")
