"""Corpus invariants, normalisation, consent and fingerprint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sandbox.data import Corpus, CorpusError


def tiny_fields() -> dict:
    return dict(
        workspace_ids=np.array(["ws-a", "ws-b"], dtype=object),
        workspace_opted_out=np.array([False, True]),
        user_ids=np.array(["u1", "u2", "u3"], dtype=object),
        user_workspace=np.array([0, 0, 1], dtype=np.int64),
        user_opted_out=np.array([False, True, False]),
        message_ids=np.array(["m1", "m2", "m3", "m4"], dtype=object),
        message_user=np.array([0, 0, 1, 2], dtype=np.int64),
        channels=np.array(["#general", "#random", "#general", "#general"], dtype=object),
        timestamps=np.array([100, 101, 102, 103], dtype=np.int64),
        texts=np.array(["hello", "with, comma", "", "fire"], dtype=object),
        reactions=(("👍",), ("👍", "🎉"), (), ("🔥",)),
    )


def test_consent_requires_user_and_workspace():
    corpus = Corpus(**tiny_fields())
    assert corpus.user_consented().tolist() == [True, False, False]
    assert (corpus.n_workspaces, corpus.n_users, corpus.n_messages) == (2, 3, 4)


def test_inputs_are_normalised_to_canonical_dtypes():
    fields = tiny_fields()
    fields.update(
        user_ids=np.array(["u1", "u2", "u3"]),
        user_workspace=np.array([0, 0, 1], dtype=np.int32),
        reactions=[["👍"], ["👍", "🎉"], [], ["🔥"]],
    )
    corpus = Corpus(**fields)
    assert corpus.user_ids.dtype == object and corpus.user_workspace.dtype == np.int64
    assert corpus.reactions == tiny_fields()["reactions"]
    assert corpus.fingerprint() == Corpus(**tiny_fields()).fingerprint()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("workspace_opted_out", np.array([False]), "workspace_opted_out"),
        ("user_workspace", np.array([0, 0, 2]), "user_workspace"),
        ("message_user", np.array([0, 0, 1, -1]), "message_user"),
        ("texts", np.array(["a", "b", "c"], dtype=object), "texts"),
        ("reactions", ((), (), ()), "reactions"),
        ("user_ids", np.array(["u1", "u1", "u3"], dtype=object), "user_ids"),
        ("message_ids", np.array(["m1", "m2", "m3", "m1"], dtype=object), "message_ids"),
        ("timestamps", np.array([1.5, 2, 3, 4]), "timestamps"),
        ("user_opted_out", np.array([0, 1, 0]), "user_opted_out"),
        ("texts", np.array(["a", 2, "c", "d"], dtype=object), "texts"),
    ],
)
def test_broken_invariants_raise_corpus_error_naming_the_field(field, value, message):
    fields = tiny_fields()
    fields[field] = value
    with pytest.raises(CorpusError, match=message):
        Corpus(**fields)


def test_fingerprint_is_stable_for_equal_content():
    assert Corpus(**tiny_fields()).fingerprint() == Corpus(**tiny_fields()).fingerprint()


@pytest.mark.parametrize(
    "field, value",
    [
        ("workspace_ids", np.array(["ws-a", "ws-c"], dtype=object)),
        ("workspace_opted_out", np.array([False, False])),
        ("user_ids", np.array(["u1", "u2", "u4"], dtype=object)),
        ("user_workspace", np.array([0, 1, 1])),
        ("user_opted_out", np.array([False, False, False])),
        ("message_ids", np.array(["m1", "m2", "m3", "m5"], dtype=object)),
        ("message_user", np.array([0, 1, 1, 2])),
        ("channels", np.array(["#general", "#random", "#general", "#random"], dtype=object)),
        ("timestamps", np.array([100, 101, 102, 104])),
        ("texts", np.array(["hello", "with, comma", " ", "fire"], dtype=object)),
        ("reactions", (("👍",), ("🎉", "👍"), (), ("🔥",))),
        ("reactions", (("👍",), ("👍", "🎉"), ("🔥",), ())),
    ],
)
def test_fingerprint_changes_with_any_field(field, value):
    fields = tiny_fields()
    fields[field] = value
    assert Corpus(**fields).fingerprint() != Corpus(**tiny_fields()).fingerprint()


def test_fingerprint_separates_field_boundaries():
    """Moving text between neighbouring messages must change the fingerprint."""
    fields = tiny_fields()
    fields["texts"] = np.array(["hello with", ", comma", "", "fire"], dtype=object)
    assert Corpus(**fields).fingerprint() != Corpus(**tiny_fields()).fingerprint()


def test_corpus_is_frozen():
    corpus = Corpus(**tiny_fields())
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.texts = np.array([], dtype=object)


def test_fingerprint_of_150k_messages_is_stable_and_sees_one_changed_text():
    """(Its speed is a benchmark matter, not a test's: no wall-clock assert on a shared machine.)"""
    m = 150_000
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "émoji 👍"], dtype=object)
    corpus = Corpus(
        workspace_ids=np.array(["ws"], dtype=object),
        workspace_opted_out=np.array([False]),
        user_ids=np.array([f"u{i}" for i in range(1000)], dtype=object),
        user_workspace=np.zeros(1000, dtype=np.int64),
        user_opted_out=np.zeros(1000, dtype=bool),
        message_ids=np.array([f"m{i}" for i in range(m)], dtype=object),
        message_user=rng.integers(1000, size=m),
        channels=words[rng.integers(4, size=m)],
        timestamps=np.arange(m),
        texts=np.array([f"text {i} " * 6 for i in range(m)], dtype=object),
        reactions=tuple(("👍", "🎉") if i % 3 else () for i in range(m)),
    )
    first = corpus.fingerprint()
    assert corpus.fingerprint() == first
    texts = corpus.texts.copy()
    texts[m // 2] = texts[m // 2] + "!"
    assert dataclasses.replace(corpus, texts=texts).fingerprint() != first
