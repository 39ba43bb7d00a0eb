"""Opted-out users and workspaces never reach a training batch — checked on the batches the model sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.data import SyntheticConfig, generate_corpus
from sandbox.data.partition import split_users
from sandbox.privacy import PrivacyBook
from sandbox.privacy.plan import plan_dpsgd
from sandbox.tasks import emoji
from sandbox.train.central import DPSGDSettings, TensorRows, TrainConfig, train_dpsgd, train_nonprivate

MARKER = "zzoptedoutmarker"
TASK = emoji.EmojiTaskConfig(n_buckets=2**20, embedding_dim=4, hidden_dim=4, bigrams=False)


class SpyModel(emoji.EmojiModel):
    """Records every token bucket in every batch it is trained on."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: set[int] = set()
        self.rows = 0

    def forward(self, tokens):
        if self.training:
            self.seen.update(torch.unique(tokens).tolist())
            self.rows += tokens.shape[0]
        return super().forward(tokens)


def corpus_with_marked_optouts(seed: int):
    """A small corpus with many opt-outs, where every message of a non-consenting user says MARKER."""
    cfg = SyntheticConfig(
        seed=seed,
        n_users=120,
        n_workspaces=8,
        user_opt_out_rate=0.2,
        workspace_opt_out_rate=0.25,
        n_canaries=2,
        n_fresh_canaries=2,
        max_messages_per_user=100,
    )
    corpus, _ = generate_corpus(cfg)
    excluded = ~corpus.user_consented()[corpus.message_user]
    texts = corpus.texts.copy()
    texts[excluded] = MARKER
    return dataclasses.replace(corpus, texts=texts), int(excluded.sum())


def _never_reach_a_training_batch(seed, private):
    corpus, _ = corpus_with_marked_optouts(seed)
    split = split_users(corpus, test_fraction=0.2, rng=np.random.default_rng(seed))
    users = np.concatenate([split.train_users, split.test_users])
    assert corpus.user_consented()[users].all()
    classes = emoji.emoji_classes(corpus, users=users)
    train = emoji.build_examples(corpus, users=split.train_users, classes=classes, config=TASK)
    model = SpyModel(config=TASK, n_classes=len(classes))
    rows = TensorRows(train.tokens, train.labels)
    cfg = TrainConfig(epochs=2, batch_size=32)
    gen = torch.Generator().manual_seed(seed)
    if private:
        book = PrivacyBook(unit="example", delta=1e-5, accountant="rdp")
        plan = plan_dpsgd(
            n_examples=len(rows),
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            noise_multiplier=1.0,
            delta=1e-5,
            accountant="rdp",
        )
        dp = DPSGDSettings(clip_norm=1.0, plan=plan)
        train_dpsgd(
            model, rows, cfg=cfg, dp=dp, book=book, generator=gen, noise_generator=torch.Generator().manual_seed(seed)
        )
    else:
        train_nonprivate(model, rows, cfg=cfg, generator=gen)
    marker_bucket = emoji.bucket_of(MARKER, TASK.n_buckets)
    assert model.rows > 0
    assert marker_bucket not in model.seen
    # the check has teeth: the same featurisation over *all* users does produce the marker
    excluded = ~corpus.user_consented()[corpus.message_user]
    if any(corpus.reactions[i] for i in np.flatnonzero(excluded)):
        everyone = emoji.build_examples(
            corpus,
            users=np.arange(corpus.n_users),
            classes=emoji.emoji_classes(corpus, users=np.arange(corpus.n_users)),
            config=TASK,
        )
        assert (everyone.tokens == marker_bucket).any()


# each example trains a model (DP-SGD through Opacus for half): 4.5 s apiece here, so `make test` draws 6
# and `make test-slow` 60 (Hypothesis draws fresh seeds every run either way)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), private=st.booleans())
def test_opted_out_users_never_reach_a_training_batch(seed, private):
    _never_reach_a_training_batch(seed, private)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), private=st.booleans())
def test_opted_out_users_never_reach_a_training_batch_thoroughly(seed, private):
    _never_reach_a_training_batch(seed, private)


def test_split_holds_out_users_not_messages():
    corpus, _ = generate_corpus(SyntheticConfig(seed=3, n_users=200, n_workspaces=10))
    split = split_users(corpus, test_fraction=0.25, rng=np.random.default_rng(0))
    assert not set(split.train_users) & set(split.test_users)
    assert split.n_excluded_users == int((~corpus.user_consented()).sum())
    assert len(split.train_users) + len(split.test_users) + split.n_excluded_users == corpus.n_users


def test_split_refuses_corpus_without_enough_consenting_users():
    corpus, _ = generate_corpus(SyntheticConfig(seed=1, n_users=20, n_workspaces=2, n_canaries=0, n_fresh_canaries=0))
    everyone_out = dataclasses.replace(corpus, user_opted_out=np.ones(corpus.n_users, dtype=bool))
    with pytest.raises(ValueError, match="consenting"):
        split_users(everyone_out, test_fraction=0.2, rng=np.random.default_rng(0))
