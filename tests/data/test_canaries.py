"""Canaries: k users x r repeats, distinct secrets, fresh ones never planted, manifest round trip."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from sandbox.data import (
    SECRET_SPACE_SIZE,
    CanaryManifest,
    CorpusError,
    draw_canary_manifest,
    format_secret,
    generate_corpus,
    secret_pattern,
)

from .conftest import SMALL


def _placements(corpus) -> Counter:
    """(text, user_id) -> count, for every message."""
    users = corpus.user_ids[corpus.message_user].tolist()
    return Counter(zip(corpus.texts.tolist(), users))


def test_each_canary_is_planted_k_users_times_r_repeats(small_corpus, small_manifest):
    placements = _placements(small_corpus)
    assert len(small_manifest.inserted) == SMALL.n_canaries
    for canary in small_manifest.inserted:
        assert len(canary.user_ids) == SMALL.canary_users and canary.repeats == SMALL.canary_repeats
        hosts = {user: n for (text, user), n in placements.items() if text == canary.text}
        assert hosts == {user: SMALL.canary_repeats for user in canary.user_ids}


def test_canary_hosts_consent_and_are_distinct(small_corpus, small_manifest):
    consenting = set(small_corpus.user_ids[small_corpus.user_consented()].tolist())
    hosts = [u for canary in small_manifest.inserted for u in canary.user_ids]
    assert set(hosts) <= consenting
    assert len(hosts) == len(set(hosts))


def test_canary_messages_carry_their_fixed_reaction(small_corpus, small_manifest):
    by_text = {c.text: c for c in small_manifest.inserted}
    seen = 0
    for text, reactions in zip(small_corpus.texts.tolist(), small_corpus.reactions):
        if text in by_text:
            assert reactions == (by_text[text].reaction,)
            seen += 1
    assert seen == SMALL.n_canaries * SMALL.canary_users * SMALL.canary_repeats


def test_secrets_are_distinct_and_in_the_documented_space(small_manifest):
    texts = [c.text for c in small_manifest.inserted] + list(small_manifest.fresh)
    assert len(texts) == len(set(texts)) == SMALL.n_canaries + SMALL.n_fresh_canaries
    pattern = secret_pattern(small_manifest.template)
    assert all(pattern.match(t) for t in texts)
    assert small_manifest.template.format(secret="4 8 1 9 2 7") == "my verification code is 4 8 1 9 2 7"
    assert "10^6" in small_manifest.secret_space


def test_fresh_canaries_never_appear_in_the_corpus(small_corpus, small_manifest):
    texts = set(small_corpus.texts.tolist())
    assert not set(small_manifest.fresh) & texts
    pattern = secret_pattern(small_manifest.template)
    in_space = {t for t in texts if pattern.match(t)}
    assert in_space == {c.text for c in small_manifest.inserted}


def test_nothing_in_the_corpus_marks_canary_messages(small_corpus, small_manifest):
    canary_texts = {c.text for c in small_manifest.inserted}
    is_canary = np.array([t in canary_texts for t in small_corpus.texts.tolist()])
    # Spread through their hosts' timelines, in the everyday channels.
    assert set(small_corpus.channels[is_canary].tolist()) <= {"#general", "#random"}
    positions = np.flatnonzero(is_canary)
    assert np.diff(positions).max() > 1


def test_several_users_per_canary():
    config = dataclasses.replace(SMALL, n_canaries=3, canary_users=5, canary_repeats=2)
    corpus, manifest = generate_corpus(config)
    placements = _placements(corpus)
    for canary in manifest.inserted:
        assert sum(n for (text, _), n in placements.items() if text == canary.text) == 10


def test_no_canaries_is_allowed():
    corpus, manifest = generate_corpus(dataclasses.replace(SMALL, n_canaries=0, n_fresh_canaries=0))
    assert manifest.inserted == () and manifest.fresh == ()
    assert corpus.n_messages > 0


def test_manifest_json_round_trip(small_manifest):
    restored = CanaryManifest.from_json(json.loads(json.dumps(small_manifest.to_json())))
    assert restored == small_manifest


def test_malformed_manifest_json_raises_corpus_error(small_manifest):
    broken = small_manifest.to_json()
    del broken["inserted"][0]["user_ids"]
    with pytest.raises(CorpusError, match="user_ids"):
        CanaryManifest.from_json(broken)


def test_format_secret_pads_and_spaces_digits():
    assert format_secret(4819) == "0 0 4 8 1 9"
    assert format_secret(SECRET_SPACE_SIZE - 1) == "9 9 9 9 9 9"
    with pytest.raises(ValueError):
        format_secret(SECRET_SPACE_SIZE)


def test_draw_canary_manifest_refuses_too_few_users():
    with pytest.raises(ValueError, match="consenting users"):
        draw_canary_manifest(
            consenting_user_ids=["a", "b"],
            n_canaries=2,
            users_per_canary=2,
            repeats=1,
            n_fresh=0,
            reactions=["👍"],
            rng=np.random.default_rng(0),
        )


def test_compact_secrets_are_one_word_from_the_same_space():
    assert format_secret(4819, "compact") == "004819"
    with pytest.raises(ValueError, match="format"):
        format_secret(1, "dashed")
    pattern = secret_pattern(secret_format="compact")
    assert pattern.match("my verification code is 004819") and not pattern.match("my verification code is 0 0 4 8 1 9")
    manifest = draw_canary_manifest(
        consenting_user_ids=["a", "b", "c"],
        n_canaries=2,
        users_per_canary=1,
        repeats=1,
        n_fresh=3,
        reactions=["👍"],
        rng=np.random.default_rng(0),
        secret_format="compact",
    )
    assert all(pattern.match(t) for t in [c.text for c in manifest.inserted] + list(manifest.fresh))
    assert "one word" in manifest.secret_space


def test_bernoulli_inclusion_plants_each_candidate_by_a_fair_coin_and_only_those():
    from dataclasses import replace

    _, fixed = generate_corpus(replace(SMALL, n_canaries=40))
    corpus, manifest = generate_corpus(replace(SMALL, n_canaries=40, canary_inclusion="bernoulli"))
    assert [c.text for c in manifest.inserted] == [c.text for c in fixed.inserted]  # same candidates
    assert all(c.planted for c in fixed.inserted) and 8 < len(manifest.planted) < 32
    placements = _placements(corpus)
    for c in manifest.inserted:
        for user_id in c.user_ids:
            assert placements[(c.text, user_id)] == (c.repeats if c.planted else 0)
    assert CanaryManifest.from_json(manifest.to_json()) == manifest
