"""Torch on one thread for training loops: reproducible and, on a shared 2-core machine, fast.

With two intra-op threads, the CPU embedding backward summed in a varying order (a
same-seed run differed by ~1e-6, seen in CI), and on a busy machine small ops stalled
(federated rounds up to 30× slower, measured). One thread gives bit-identical replays.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def single_threaded():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
