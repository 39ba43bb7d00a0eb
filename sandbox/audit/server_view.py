"""Placeholder: being written (issue 15)."""

from __future__ import annotations


def run_server_view_audit(cfg, data, outcome, *, out_dir, privacy) -> dict:
    raise NotImplementedError("audit=server_view is being written (issue 15)")
