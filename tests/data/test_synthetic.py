"""The synthetic generator: deterministic, heavy-tailed, non-IID, consent rates, learnable emoji."""

from __future__ import annotations

import dataclasses
import re

import emoji
import numpy as np
import pytest

from sandbox.data import REACTION_EMOJI, SyntheticConfig, emoji_keywords, generate_corpus
from sandbox.data.lexicon import FILLER_WORDS

from .conftest import SMALL


def _canary_mask(corpus, manifest) -> np.ndarray:
    texts = {c.text for c in manifest.inserted}
    return np.array([t in texts for t in corpus.texts.tolist()])


def _primary_index(corpus) -> np.ndarray:
    index = {e: i for i, e in enumerate(REACTION_EMOJI)}
    return np.array([index[r[0]] if r else -1 for r in corpus.reactions])


def test_same_seed_gives_identical_corpus_and_manifest(small_corpus, small_manifest):
    again, manifest = generate_corpus(SMALL)
    assert again.fingerprint() == small_corpus.fingerprint()
    assert manifest == small_manifest
    assert again.texts.tolist() == small_corpus.texts.tolist()


def test_different_seed_gives_different_corpus(small_corpus, small_manifest):
    other, manifest = generate_corpus(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert other.fingerprint() != small_corpus.fingerprint()
    assert manifest.inserted != small_manifest.inserted


def test_sizes_and_dtypes(small_corpus):
    c = small_corpus
    assert (c.n_workspaces, c.n_users) == (SMALL.n_workspaces, SMALL.n_users)
    assert c.workspace_ids.dtype == object and c.texts.dtype == object
    assert c.user_workspace.dtype == np.int64 and c.timestamps.dtype == np.int64
    assert len(set(c.message_ids.tolist())) == c.n_messages
    assert np.bincount(c.user_workspace, minlength=c.n_workspaces).min() >= 1
    assert np.bincount(c.message_user, minlength=c.n_users).min() >= 1


def test_timestamps_strictly_increase_within_each_user(small_corpus):
    c = small_corpus
    order = np.lexsort((np.arange(c.n_messages), c.message_user))
    user, ts = c.message_user[order], c.timestamps[order]
    same_user = user[1:] == user[:-1]
    assert np.all(ts[1:][same_user] > ts[:-1][same_user])
    assert ts.min() >= SMALL.start_timestamp


def test_reactions_are_distinct_emoji_of_the_configured_set(small_corpus):
    allowed = set(REACTION_EMOJI[: SMALL.n_emoji])
    for reactions in small_corpus.reactions:
        assert set(reactions) <= allowed
        assert len(set(reactions)) == len(reactions) <= 3
    assert all(e in emoji.EMOJI_DATA for e in REACTION_EMOJI)


def test_reaction_rate_is_respected(small_corpus, small_manifest):
    ordinary = ~_canary_mask(small_corpus, small_manifest)
    reacted = np.array([len(r) > 0 for r in small_corpus.reactions])[ordinary]
    assert abs(reacted.mean() - SMALL.reaction_rate) < 0.02


def test_messages_per_user_are_heavy_tailed(small_corpus):
    counts = np.bincount(small_corpus.message_user)
    assert counts.max() >= 20 * np.median(counts)
    assert np.mean(counts <= 5) > 0.2  # many users with a handful


def test_max_messages_per_user_is_a_hard_cap():
    config = dataclasses.replace(SMALL, max_messages_per_user=30, n_canaries=0)
    corpus, _ = generate_corpus(config)
    assert np.bincount(corpus.message_user).max() == 30


def test_workspaces_prefer_different_emoji(small_corpus):
    """Per-workspace primary-reaction histograms differ far more than a label shuffle allows."""
    primary = _primary_index(small_corpus)
    reacted = primary >= 0
    workspace = small_corpus.user_workspace[small_corpus.message_user][reacted]
    labels = primary[reacted]

    def mean_total_variation(ws: np.ndarray) -> float:
        pooled = np.bincount(labels, minlength=len(REACTION_EMOJI)) / len(labels)
        distances = []
        for w in np.unique(ws):
            mine = labels[ws == w]
            if len(mine) >= 200:
                hist = np.bincount(mine, minlength=len(REACTION_EMOJI)) / len(mine)
                distances.append(0.5 * np.abs(hist - pooled).sum())
        return float(np.mean(distances))

    shuffled = np.random.default_rng(0).permutation(workspace)
    assert mean_total_variation(workspace) > 3 * mean_total_variation(shuffled)


def test_opt_outs_occur_at_configured_rates():
    config = SyntheticConfig(
        seed=3,
        n_workspaces=2000,
        n_users=8000,
        messages_per_user_median=1.0,
        messages_per_user_sigma=0.0,
        workspace_opt_out_rate=0.1,
        user_opt_out_rate=0.2,
        n_canaries=0,
    )
    corpus, _ = generate_corpus(config)
    for observed, rate, n in ((corpus.workspace_opted_out, 0.1, 2000), (corpus.user_opted_out, 0.2, 8000)):
        assert abs(observed.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    expected = ~corpus.user_opted_out & ~corpus.workspace_opted_out[corpus.user_workspace]
    assert np.array_equal(corpus.user_consented(), expected)


def test_opt_out_rate_zero_means_everyone_consents():
    config = dataclasses.replace(SMALL, workspace_opt_out_rate=0.0, user_opt_out_rate=0.0)
    assert generate_corpus(config)[0].user_consented().all()


@pytest.mark.parametrize("keyword_rate", [0.0, 0.65, 1.0])
def test_share_of_messages_with_primary_keywords_follows_keyword_rate(keyword_rate):
    config = dataclasses.replace(SMALL, keyword_rate=keyword_rate, distractor_rate=0.0, n_canaries=0)
    corpus, _ = generate_corpus(config)
    hits = [
        bool(set(emoji_keywords(r[0])) & set(text.split()))
        for text, r in zip(corpus.texts.tolist(), corpus.reactions)
        if r
    ]
    # Keywords shared between emoji (e.g. "smiling") let a few messages hit by accident.
    assert keyword_rate - 0.02 <= np.mean(hits) <= keyword_rate + 0.03


def test_message_words_come_from_emoji_names_or_filler(small_corpus, small_manifest):
    name_tokens = {
        t
        for data in emoji.EMOJI_DATA.values()
        for name in (data["en"], *data.get("alias", []))
        for t in re.split(r"[_\-\s]+", name.strip(":").lower())
    }
    allowed = name_tokens | set(FILLER_WORDS)
    ordinary = ~_canary_mask(small_corpus, small_manifest)
    words = {w for text in small_corpus.texts[ordinary].tolist() for w in text.split()}
    assert words <= allowed
    assert len(words) > 500


def test_channels_are_general_random_or_a_few_topic_channels_per_workspace(small_corpus):
    workspace = small_corpus.user_workspace[small_corpus.message_user]
    for w in range(small_corpus.n_workspaces):
        channels = set(small_corpus.channels[workspace == w].tolist())
        assert all(c.startswith("#") for c in channels)
        assert len(channels - {"#general", "#random"}) <= SMALL.topic_channels_per_workspace
    assert len(set(small_corpus.channels.tolist())) > 10  # topic channels differ across workspaces


def test_emoji_are_learnable_from_text_but_not_trivially(small_corpus):
    """Naive Bayes on bag of words, trained on some users, beats the popularity baseline on others."""
    primary = _primary_index(small_corpus)
    reacted = primary >= 0
    test_user = np.random.default_rng(1).random(small_corpus.n_users) < 0.3
    is_test = test_user[small_corpus.message_user]
    vocab: dict[str, int] = {}
    docs = [[vocab.setdefault(w, len(vocab)) for w in t.split()] for t in small_corpus.texts.tolist()]
    counts = np.full((len(REACTION_EMOJI), len(vocab)), 0.1)
    for i in np.flatnonzero(reacted & ~is_test):
        np.add.at(counts[primary[i]], docs[i], 1)
    log_word = np.log(counts / counts.sum(1, keepdims=True))
    prior = np.bincount(primary[reacted & ~is_test], minlength=len(REACTION_EMOJI)) + 1.0
    test = np.flatnonzero(reacted & is_test)
    scores = np.stack([np.log(prior) + log_word[:, docs[i]].sum(1) for i in test])
    top5 = np.argsort(-scores, axis=1)[:, :5]
    model = (top5 == primary[test][:, None]).any(1).mean()
    baseline = np.isin(primary[test], np.argsort(-prior)[:5]).mean()
    assert 0.2 < baseline < 0.5
    assert model > baseline + 0.25
    assert model < 0.95


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_users", 0),
        ("n_users", 5),
        ("n_emoji", 1),
        ("reaction_rate", 1.5),
        ("keyword_rate", -0.1),
        ("n_canaries", -1),
        ("seed", -1),
        ("canary_repeats", 0),
    ],
)
def test_invalid_config_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(SMALL, n_workspaces=20, **{field: value})


@pytest.mark.parametrize("field, value", [("n_emoji", len(REACTION_EMOJI) + 1), ("words_per_topic", 100_000)])
def test_a_config_past_the_lexicon_is_refused_before_drawing(field, value):
    """The schema knows no lexicon (it is the bottom layer); generate_corpus checks its limits first."""
    with pytest.raises(ValueError, match=field):
        generate_corpus(dataclasses.replace(SMALL, n_workspaces=20, **{field: value}))


def test_too_many_canary_users_is_refused():
    with pytest.raises(ValueError, match="consenting users"):
        generate_corpus(dataclasses.replace(SMALL, n_canaries=300, canary_users=2))


@pytest.mark.slow
def test_default_corpus_size_and_speed():
    corpus, manifest = generate_corpus(SyntheticConfig())
    counts = np.bincount(corpus.message_user)
    assert 120_000 <= corpus.n_messages <= 200_000
    assert counts.max() >= 1000 and np.median(counts) <= 15
    assert len(manifest.inserted) == 10 and len(manifest.fresh) == 100


def test_channel_discovery_moves_only_topic_channel_messages_before_each_users_find(small_corpus):
    """channel_discovery changes nothing but channels: for each (user, topic channel) the
    messages sent to #general/#random instead are the pair's *earliest* ones, and the default
    corpus (discovery off) is untouched by the extra random stream."""
    found, (again, _) = generate_corpus(dataclasses.replace(SMALL, channel_discovery=True)), generate_corpus(SMALL)
    found = found[0]
    assert again.fingerprint() == small_corpus.fingerprint()
    for name in ("message_user", "timestamps", "texts", "message_ids"):
        assert np.array_equal(getattr(found, name), getattr(small_corpus, name)), name
    assert found.reactions == small_corpus.reactions
    before, after = small_corpus.channels.astype(str), found.channels.astype(str)
    changed = before != after
    general = np.isin(before, ["#general", "#random"])
    assert not (changed & general).any()  # only topic-channel messages move...
    assert np.isin(after[changed], ["#general", "#random"]).all()  # ...and only to the general channels
    assert 0.2 < changed.sum() / (~general).sum() < 0.8  # uniform find point: about half of them
    user = small_corpus.message_user
    for u, channel in set(zip(user[changed].tolist(), before[changed].tolist())):
        pair = np.flatnonzero((user == u) & (before == channel))  # in time order (grouped by user)
        moved = changed[pair]
        assert moved[: moved.sum()].all(), (u, channel)  # a prefix of the pair's messages in time


def test_channel_task_sets_the_corpus_knobs_and_other_tasks_keep_the_defaults():
    from sandbox.config import resolve
    from tests.conftest import compose_config

    channels = resolve(compose_config(["task=channels"])).data.synthetic
    assert (channels.channel_discovery, channels.user_topic_concentration) == (True, 3.0)
    for task in ("emoji", "jobs"):
        synthetic = resolve(compose_config([f"task={task}"])).data.synthetic
        defaults = SyntheticConfig()
        assert (
            (synthetic.channel_discovery, synthetic.user_topic_concentration)
            == (defaults.channel_discovery, defaults.user_topic_concentration)
            == (False, 20.0)
        )


def test_seeking_users_and_only_they_reveal_it_in_careers_and_the_default_corpus_has_none(small_corpus):
    """seeking_rate > 0: draw_seeking is the generator's own draw; every seeking user (and no one else)
    writes a phrase of SEEKING_PHRASES, in #careers (or, with discovery, first in #general/#random);
    hiring posts come from others. At rate 0 nothing is added and no #careers exists."""
    from sandbox.data.synthetic import CAREERS_CHANNEL, SEEKING_PHRASES, draw_seeking

    config = dataclasses.replace(SMALL, seeking_rate=0.2, channel_discovery=True)
    corpus, _ = generate_corpus(config)
    seeking = draw_seeking(config)
    assert 0.1 < seeking.mean() < 0.3 and not draw_seeking(SMALL).any()
    reveals = np.array([any(p in t for p in SEEKING_PHRASES) for t in corpus.texts.tolist()])
    assert set(np.unique(corpus.message_user[reveals]).tolist()) == set(np.flatnonzero(seeking).tolist())
    careers = corpus.channels.astype(str) == CAREERS_CHANNEL
    assert np.isin(corpus.channels[reveals].astype(str), [CAREERS_CHANNEL, "#general", "#random"]).all()
    assert careers[reveals].any() and (careers & ~reveals).any()  # openings posted by others
    assert not seeking[corpus.message_user[careers & ~reveals]].any()
    assert CAREERS_CHANNEL not in set(small_corpus.channels.tolist())
    assert not any(p in t for t in small_corpus.texts.tolist() for p in SEEKING_PHRASES)
