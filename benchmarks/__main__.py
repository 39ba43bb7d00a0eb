"""`make bench`: cost of DP-SGD against non-private training, measured side by side in one run.

Machines here are shared and noisy, so only ratios measured in the same process are
reported, alternating the trainers over several repeats and taking medians. For each built-in
model shape (emoji, jobs, channels: ``HashedBagModel`` with the task's default sizes): plain
training, DP-SGD as runs do it (per-example norms by ``sandbox.train.fastdp``) and DP-SGD with
Opacus' ghost clipping (``train_dpsgd(..., opacus_ghost=True)``), at the same batch size.
"""

from __future__ import annotations

import statistics
import time

import torch

from sandbox.config.schema import EmojiTaskConfig
from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import plan_dpsgd
from sandbox.tasks.text import HashedBagModel
from sandbox.train.central import DPSGDSettings, TensorRows, TrainConfig, train_dpsgd, train_nonprivate

N, STEPS, REPEATS, BATCH = 20_000, 40, 3, 512
# the tasks' default model shapes (sandbox/conf/task/*.yaml); classes as in their default corpora
MODELS = {
    "emoji": (EmojiTaskConfig(), 40),
    "jobs": (EmojiTaskConfig(n_buckets=1024, max_tokens=128, bigrams=False, embedding_dim=16, hidden_dim=32), 600),
    "channels": (EmojiTaskConfig(n_buckets=4096, max_tokens=128, bigrams=False, embedding_dim=32, hidden_dim=64), 200),
}


def _rows(cfg: EmojiTaskConfig, n_classes: int) -> TensorRows:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, cfg.max_tokens, (N, 1), generator=g)
    tokens = torch.randint(1, cfg.n_buckets, (N, cfg.max_tokens), generator=g)
    tokens[torch.arange(cfg.max_tokens).expand(N, -1) >= lengths] = 0
    return TensorRows(tokens, torch.randint(0, n_classes, (N,), generator=g))


def _seconds_per_step(kind: str, cfg: EmojiTaskConfig, n_classes: int, rows: TensorRows) -> float:
    train = TrainConfig(batch_size=BATCH, epochs=STEPS * BATCH / N)
    torch.manual_seed(0)
    model = HashedBagModel(config=cfg, n_classes=n_classes)
    gen = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    if kind == "plain":
        result = train_nonprivate(model, rows, cfg=train, generator=gen)
    else:
        plan = plan_dpsgd(
            n_examples=N, batch_size=BATCH, epochs=train.epochs, noise_multiplier=1.0, delta=1e-6, accountant="rdp"
        )
        result = train_dpsgd(
            model,
            rows,
            cfg=train,
            dp=DPSGDSettings(clip_norm=1.0, plan=plan),
            generator=gen,
            book=PrivacyBook(unit="example", delta=1e-6, accountant="rdp"),
            noise_generator=torch.Generator().manual_seed(2),
            opacus_ghost=kind == "ghost",
        )
    return (time.perf_counter() - start) / result.steps


def main() -> None:
    print(
        f"DP-SGD step cost: batch {BATCH}, {STEPS} steps, median of {REPEATS}, torch threads {torch.get_num_threads()}"
    )
    for name, (cfg, n_classes) in MODELS.items():
        rows = _rows(cfg, n_classes)
        times = {"plain": [], "fast": [], "ghost": []}
        for _ in range(REPEATS):
            for kind in times:
                times[kind].append(_seconds_per_step(kind, cfg, n_classes, rows))
        p, f, g = (statistics.median(times[k]) for k in ("plain", "fast", "ghost"))
        size = cfg.n_buckets * cfg.embedding_dim
        print(f"{name} model ({cfg.n_buckets} buckets × {cfg.embedding_dim} = {size:,} embedding weights)")
        print(f"  non-private           : {1000 * p:7.2f} ms/step")
        print(f"  DP-SGD (fastdp, runs) : {1000 * f:7.2f} ms/step   {f / p:.2f}× non-private")
        print(f"  DP-SGD (Opacus ghost) : {1000 * g:7.2f} ms/step   {g / p:.2f}× non-private")


if __name__ == "__main__":
    main()
