"""`make bench`: cost of DP-SGD against non-private training, measured side by side in one run.

Machines here are shared and noisy, so only ratios measured in the same process are
reported, alternating the two trainers over several repeats and taking medians.
"""

from __future__ import annotations

import statistics
import time

import torch

from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import plan_dpsgd
from sandbox.tasks import emoji
from sandbox.train.central import DPSGDSettings, TensorRows, TrainConfig, train_dpsgd, train_nonprivate
from sandbox.train.fastdp import clipped_gradient_sum

N, STEPS, REPEATS = 20_000, 40, 3


def _rows(cfg: emoji.EmojiTaskConfig) -> TensorRows:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, cfg.max_tokens, (N, 1), generator=g)
    tokens = torch.randint(1, cfg.n_buckets, (N, cfg.max_tokens), generator=g)
    tokens[torch.arange(cfg.max_tokens).expand(N, -1) >= lengths] = 0
    return TensorRows(tokens, torch.randint(0, 40, (N,), generator=g))


def _seconds_per_step(private: bool, cfg: emoji.EmojiTaskConfig, rows: TensorRows) -> float:
    train = TrainConfig(batch_size=512, epochs=STEPS * 512 / N)
    model = emoji.EmojiModel(config=cfg, n_classes=40)
    gen = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    if private:
        dp = DPSGDSettings(
            clip_norm=1.0,
            plan=plan_dpsgd(
                n_examples=N,
                batch_size=train.batch_size,
                epochs=train.epochs,
                noise_multiplier=1.0,
                delta=1e-6,
                accountant="rdp",
            ),
        )
        result = train_dpsgd(
            model,
            rows,
            cfg=train,
            dp=dp,
            generator=gen,
            book=PrivacyBook(unit="example", delta=1e-6, accountant="rdp"),
            noise_generator=torch.Generator().manual_seed(2),
        )
    else:
        result = train_nonprivate(model, rows, cfg=train, generator=gen)
    return (time.perf_counter() - start) / result.steps


def _seconds_per_kernel_step(private: bool, cfg: emoji.EmojiTaskConfig, rows: TensorRows) -> float:
    """One Adam step on a fixed batch of 512: autograd (plain), or the fast clipped sum + noise σ·C / B."""
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=cfg, n_classes=40)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    noise = torch.Generator().manual_seed(3)
    starts = [(i * 512) % (N - 512) for i in range(STEPS)]
    batches = [rows.__getitems__(list(range(s, s + 512))) for s in starts]
    start = time.perf_counter()
    for tokens, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        if private:
            clipped = clipped_gradient_sum(model, tokens, labels, clip_norm=1.0)
            for p, g in zip(model.parameters(), clipped.grads):
                p.grad = (g + torch.randn(g.shape, generator=noise) * 1.0) / len(labels)
        else:
            torch.nn.functional.cross_entropy(model(tokens), labels).backward()
        optimizer.step()
    return (time.perf_counter() - start) / STEPS


def main() -> None:
    cfg = emoji.EmojiTaskConfig()
    rows = _rows(cfg)
    plain, private = [], []
    for _ in range(REPEATS):
        plain.append(_seconds_per_step(False, cfg, rows))
        private.append(_seconds_per_step(True, cfg, rows))
    p, d = statistics.median(plain), statistics.median(private)
    print(
        f"emoji model ({cfg.n_buckets} buckets × {cfg.embedding_dim}), batch 512, {STEPS} steps, "
        f"median of {REPEATS}, torch threads {torch.get_num_threads()}"
    )
    print(f"  non-private : {1000 * p:7.2f} ms/step")
    print(f"  DP-SGD ghost: {1000 * d:7.2f} ms/step")
    print(f"  ratio DP / non-private: {d / p:.2f}×")
    plain_k, fast_k = [], []
    for _ in range(REPEATS):
        plain_k.append(_seconds_per_kernel_step(False, cfg, rows))
        fast_k.append(_seconds_per_kernel_step(True, cfg, rows))
    pk, fk = statistics.median(plain_k), statistics.median(fast_k)
    print("  the per-step kernels alone (fixed batches of 512, Adam; sandbox.train.fastdp, not yet in train_dpsgd):")
    print(f"  non-private autograd step           : {1000 * pk:7.2f} ms/step")
    print(f"  DP step, fast clipped sum + σ·C noise: {1000 * fk:7.2f} ms/step")
    print(f"  ratio fast DP / non-private: {fk / pk:.2f}×")


if __name__ == "__main__":
    main()
