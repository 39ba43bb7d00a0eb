"""The privacy-preserving training sandbox (README.md). ``sandbox.load(RUN_DIR)`` gives a trained model
that serves suggestions (``sandbox.serve``); it is imported on first use, so ``import sandbox`` stays light."""

from __future__ import annotations


def load(run_dir):
    """``sandbox.serve.load``: the model of a run directory, with ``suggest(text, k)``."""
    from sandbox.serve import load as _load

    return _load(run_dir)
