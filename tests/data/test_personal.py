"""Personal content of the synthetic corpus (sandbox/data/personal.py): off by default, deterministic,
at the configured rates, per user, and consistent with its ground truth (``personal_details``)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from sandbox.config import ConfigError, resolve
from sandbox.data import SyntheticConfig, generate_corpus, secret_pattern
from sandbox.data.lexicon import FILLER_WORDS, REACTION_EMOJI, emoji_keywords, topic_vocabulary
from sandbox.data.personal import EMAIL_TEMPLATES, PHONE_TEMPLATES, everyday_vocabulary, personal_details
from tests.conftest import compose_config

from .conftest import SMALL

# Corpus.fingerprint() of generate_corpus(...) before personal content existed (commit 066884a):
# the default corpus and the tests' small one must stay these, bit for bit.
DEFAULT_FINGERPRINT = "35acec4bc17c27fdd99928662f0d4f22b0d43b5bc54227e24cfa051a0fb11c55"
SMALL_FINGERPRINT = "55d238daefd7902eea8d64140a41c611570940393489f0c4673cd070a967dd35"

PERSONAL = dataclasses.replace(SMALL, personal_rate=0.3, contact_detail_rate=0.05, everyday_rate=0.5)
# Every message mentions a name, uniformly over the user's list: each detail shows up quickly.
SATURATED = dataclasses.replace(SMALL, personal_rate=1.0, personal_zipf_exponent=0.0, contact_detail_rate=0.5)
_TOKEN = re.compile(r"[a-z0-9']+")


@pytest.fixture(scope="module")
def personal():
    corpus, manifest = generate_corpus(PERSONAL)
    return corpus, manifest, personal_details(PERSONAL)


@pytest.fixture(scope="module")
def saturated():
    corpus, manifest = generate_corpus(SATURATED)
    return corpus, manifest, personal_details(SATURATED)


def _canary_mask(corpus, manifest) -> np.ndarray:
    texts = {c.text for c in manifest.inserted}
    return np.array([t in texts for t in corpus.texts.tolist()])


def _mentions(corpus, details) -> np.ndarray:
    """bool [M]: the message holds one of its own user's names (as written)."""
    return np.array([any(n in t for n in details.names[u]) for t, u in zip(corpus.texts, corpus.message_user)])


def _binomial_ok(hits: int, n: int, p: float, sds: float = 4.0) -> bool:
    return abs(hits / n - p) <= sds * np.sqrt(p * (1 - p) / n)


def test_the_default_corpus_is_bit_identical_to_before_personal_content():
    assert generate_corpus(SyntheticConfig())[0].fingerprint() == DEFAULT_FINGERPRINT
    assert generate_corpus(SMALL)[0].fingerprint() == SMALL_FINGERPRINT
    # the knobs that only shape personal content change nothing while its rates are 0
    quiet = dataclasses.replace(SMALL, contacts_per_user=30, everyday_words=100, personal_zipf_exponent=2.0)
    assert generate_corpus(quiet)[0].fingerprint() == SMALL_FINGERPRINT
    off = personal_details(SMALL)
    assert off.names == off.contacts == off.name_weights == [()] * SMALL.n_users


def test_same_config_gives_the_same_corpus_and_details(personal):
    corpus, manifest, details = personal
    again, manifest_again = generate_corpus(PERSONAL)
    assert again.fingerprint() == corpus.fingerprint() != SMALL_FINGERPRINT
    assert manifest_again == manifest
    assert personal_details(PERSONAL) == details
    other = personal_details(dataclasses.replace(PERSONAL, seed=PERSONAL.seed + 1))
    assert other.names != details.names and other.contacts != details.contacts


def test_another_process_draws_the_same_personal_corpus(personal):
    """Faker is seeded and the pools keep their order: a fresh process (other hash seed) agrees."""
    code = "from sandbox.data import generate_corpus; from tests.data.test_personal import PERSONAL; "
    code += "print(generate_corpus(PERSONAL)[0].fingerprint())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == personal[0].fingerprint()


def test_personal_content_changes_only_texts_users_consent_and_labels_stay(personal, small_corpus, small_manifest):
    """Opted-out users are in the corpus as before; topics, channels, reactions, timestamps unchanged."""
    corpus, manifest, _ = personal
    for name in (
        "workspace_ids",
        "user_ids",
        "user_workspace",
        "message_ids",
        "message_user",
        "channels",
        "timestamps",
    ):
        assert np.array_equal(getattr(corpus, name), getattr(small_corpus, name)), name
    assert np.array_equal(corpus.user_opted_out, small_corpus.user_opted_out)
    assert np.array_equal(corpus.workspace_opted_out, small_corpus.workspace_opted_out)
    assert corpus.user_opted_out.any() and corpus.reactions == small_corpus.reactions
    assert manifest == small_manifest
    changed = corpus.texts != small_corpus.texts
    assert 0.5 < changed.mean() < 1.0  # most messages got everyday words or a mention


def test_personal_words_appear_at_the_configured_rate(personal):
    corpus, manifest, details = personal
    drafted = ~_canary_mask(corpus, manifest)
    hits = _mentions(corpus, details)[drafted]
    assert _binomial_ok(int(hits.sum()), len(hits), PERSONAL.personal_rate)


def test_users_mention_their_names_with_their_own_zipf(personal):
    """Counted mentions of the heaviest users fit their own weights (χ²); orders differ across users."""
    corpus, _, details = personal
    counts = np.bincount(corpus.message_user, minlength=corpus.n_users)
    for user in np.argsort(-counts)[:3]:
        names = details.names[user]
        longest_first = sorted(names, key=len, reverse=True)
        pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(n)}(?![\w-])" for n in longest_first))
        seen = Counter(m for t in corpus.texts[corpus.message_user == user] for m in pattern.findall(t))
        observed = np.array([seen[n] for n in names], dtype=float)
        expected = np.array(details.name_weights[user]) * observed.sum()
        assert observed.sum() > 50
        assert stats.chisquare(observed, expected).pvalue > 1e-4, (user, observed, expected)
    top = [int(np.argmax(w)) for w in details.name_weights if len(w) == 13]
    assert len(set(top)) >= 10 and max(Counter(top).values()) / len(top) < 0.2  # the head is random per user
    # the Zipf is exponent 1: the top name is about 1/H_L of mentions
    weights = [np.sort(w)[::-1] for w in details.name_weights if len(w) == 13]
    harmonic = (1.0 / np.arange(1, 14)).sum()
    assert np.allclose(np.mean(weights, axis=0), 1.0 / np.arange(1, 14) / harmonic)


def test_colleagues_are_shared_within_a_workspace_more_than_across(personal):
    corpus, _, details = personal
    ws = corpus.user_workspace
    sets = [set(n) for n in details.names]
    pairs = np.random.default_rng(0).integers(corpus.n_users, size=(4000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    shared = np.array([len(sets[a] & sets[b]) for a, b in pairs])
    same = ws[pairs[:, 0]] == ws[pairs[:, 1]]
    assert same.sum() > 20
    assert shared[same].mean() > 3 * shared[~same].mean()


def test_contact_details_appear_in_their_users_messages_only_at_the_rate(personal):
    corpus, manifest, details = personal
    owners: dict[str, set[int]] = {}
    for user, contacts in enumerate(details.contacts):
        assert len(contacts) == 2 and "@" in contacts[0] and re.fullmatch(r"[2-9]\d\d-[2-9]\d\d-\d{4}", contacts[1])
        for contact in contacts:
            owners.setdefault(contact, set()).add(user)
    found = re.compile(r"[\w.]+@[\w.-]+|\d{3}-\d{3}-\d{4}")
    carrying = 0
    for text, user in zip(corpus.texts.tolist(), corpus.message_user.tolist()):
        contacts = found.findall(text)
        carrying += bool(contacts)
        for contact in contacts:
            assert user in owners[contact], (text, user)
    drafted = int((~_canary_mask(corpus, manifest)).sum())
    assert _binomial_ok(carrying, drafted, PERSONAL.contact_detail_rate)
    templates = [t.format("") for t in EMAIL_TEMPLATES + PHONE_TEMPLATES]
    assert all(any(t in text for t in templates) for text in corpus.texts if found.search(text))


def test_every_detail_occurs_in_its_users_messages_when_they_write_enough(saturated):
    corpus, _, details = saturated
    counts = np.bincount(corpus.message_user, minlength=corpus.n_users)
    heavy = np.flatnonzero(counts >= 200)
    assert len(heavy) >= 5
    for user in heavy:
        texts = " | ".join(corpus.texts[corpus.message_user == user].tolist())
        for detail in details.names[user] + details.contacts[user]:
            assert detail in texts, (user, detail)


def test_message_words_are_lexicon_everyday_or_personal(personal):
    """Nothing else enters: every token is a word of the emoji lexicon, filler, everyday English,
    a canary digit, a token of some user's details or of a contact template."""
    corpus, _, details = personal
    everyday, probs = everyday_vocabulary(PERSONAL.everyday_words)
    keywords = {k for c in REACTION_EMOJI[: PERSONAL.n_emoji] for k in emoji_keywords(c)}
    assert not keywords & set(everyday)  # everyday words never speak for an emoji
    assert np.isclose(probs.sum(), 1.0) and probs[0] > 10 * probs[-1]  # Zipfian
    allowed = set(topic_vocabulary()) | keywords | set(FILLER_WORDS) | set(everyday) | set("0123456789")
    allowed |= {"my", "verification", "code", "is"}
    allowed |= {t for template in EMAIL_TEMPLATES + PHONE_TEMPLATES for t in _TOKEN.findall(template)}
    allowed |= {t for u in details.names + details.contacts for d in u for t in _TOKEN.findall(d.lower())}
    seen = {t for text in corpus.texts for t in _TOKEN.findall(text.lower())}
    assert seen <= allowed, sorted(seen - allowed)[:10]
    assert len(seen & set(everyday)) > 500


def test_planted_canaries_are_unchanged_with_personal_content(personal, small_corpus, small_manifest):
    """Each planted canary text is still there k·r times, verbatim, and only canaries match the secret pattern."""
    corpus, manifest, _ = personal
    assert manifest.to_json() == small_manifest.to_json()
    placements = Counter(zip(corpus.texts.tolist(), corpus.message_user.tolist()))
    for canary in manifest.planted:
        for user_id in canary.user_ids:
            user = int(np.flatnonzero(corpus.user_ids == user_id)[0])
            assert placements[(canary.text, user)] == canary.repeats
    pattern = secret_pattern(manifest.template, PERSONAL.canary_format)
    matching = {t for t in corpus.texts.tolist() if pattern.match(t)}
    assert matching == {c.text for c in manifest.planted}
    assert np.array_equal(_canary_mask(corpus, manifest), _canary_mask(small_corpus, small_manifest))


def test_data_personal_turns_the_knobs_on_and_the_default_keeps_them_off():
    on = resolve(compose_config(["data=personal"])).data.synthetic
    off = resolve(compose_config([])).data.synthetic
    assert on.personal_rate > 0 and on.contact_detail_rate > 0 and on.everyday_rate > 0
    assert off.personal_rate == off.contact_detail_rate == off.everyday_rate == 0
    differ = {f.name for f in dataclasses.fields(on) if getattr(on, f.name) != getattr(off, f.name)}
    assert differ == {"personal_rate", "contact_detail_rate", "everyday_rate"}  # the rest is data=synthetic's


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.personal_rate=1.5", "data.personal_rate"),
        ("data.contact_detail_rate=-0.1", "data.contact_detail_rate"),
        ("data.everyday_rate=2", "data.everyday_rate"),
        ("data.personal_workspace_share=1.1", "data.personal_workspace_share"),
        ("data.everyday_words=0", "data.everyday_words"),
        ("data.contacts_per_user=-1", "data.contacts_per_user"),
        ("data.customers_per_user=101", "data.customers_per_user"),
        ("data.projects_per_user=-2", "data.projects_per_user"),
        ("data.personal_zipf_exponent=-1", "data.personal_zipf_exponent"),
    ],
)
def test_invalid_personal_knobs_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}"):
        resolve(compose_config(["data=personal", override]))


def test_personal_content_needs_something_to_mention():
    with pytest.raises(ConfigError, match="^data.contacts_per_user"):
        resolve(
            compose_config(
                ["data=personal", "data.contacts_per_user=0", "data.customers_per_user=0", "data.projects_per_user=0"]
            )
        )
