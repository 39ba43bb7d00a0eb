"""Emoji task: featurisation, model invariances, metrics on hand-checked cases."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from sandbox.tasks import emoji

CFG = emoji.EmojiTaskConfig(n_buckets=1024, max_tokens=6, embedding_dim=8, hidden_dim=8)


def test_topk_accuracy_hand_computed():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 2, 0, 1])
    assert emoji.topk_accuracy(logits, labels, 1) == 0.25  # only row 0
    assert emoji.topk_accuracy(logits, labels, 2) == 0.5  # rows 0 and 3
    assert emoji.topk_accuracy(logits, labels, 5) == 1.0  # k above the class count means all


def test_baseline_suggests_training_frequencies():
    train = emoji.EmojiExamples(
        tokens=torch.zeros(6, 2, dtype=torch.long), labels=torch.tensor([2, 2, 2, 0, 0, 1]), message_index=np.arange(6)
    )
    test = emoji.EmojiExamples(
        tokens=torch.zeros(4, 2, dtype=torch.long), labels=torch.tensor([2, 0, 1, 1]), message_index=np.arange(4)
    )
    base = emoji.most_frequent_baseline(train, test, n_classes=3, k=2)
    assert base["top1"] == 0.25 and base["top2"] == 0.5


def test_hash_buckets_are_stable_across_processes_and_never_padding():
    words = ["hello", "thumbs up", "🎉", "x" * 100]
    here = [emoji.bucket_of(w, 1024) for w in words]
    code = f"from sandbox.tasks.emoji import bucket_of; print([bucket_of(w, 1024) for w in {words!r}])"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert str(here) == there.strip()
    assert all(1 <= b < 1024 for b in here)


def test_featurize_truncates_and_pads():
    tokens = emoji.featurize(np.array(["a b c d e f g h", "Party time!"], dtype=object), config=CFG)
    assert tokens.shape == (2, 6)
    assert (tokens[0] != emoji.PAD).all()  # 8 words + 7 bigrams truncated to 6
    # "party", "time", "party time" then padding
    assert (tokens[1, :3] != emoji.PAD).all() and (tokens[1, 3:] == emoji.PAD).all()


def test_model_is_a_bag_padding_and_order_do_not_matter():
    torch.manual_seed(0)
    model = emoji.EmojiModel(config=CFG, n_classes=5).eval()
    a = model(torch.tensor([[5, 9, 0, 0, 0, 0]]))
    b = model(torch.tensor([[9, 5, 0, 0, 0, 0]]))
    c = model(torch.tensor([[5, 9]]))
    d = model(torch.tensor([[5, 5, 0, 0, 0, 0]]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, d)
