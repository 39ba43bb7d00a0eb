"""The columnar corpus (data.layout=columnar, issue 17): the string corpus' content in integer columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sandbox.config.schema import ConfigError, DataConfig, EmojiTaskConfig, SyntheticConfig
from sandbox.data.columnar import COLUMNAR_FROM, RowIds, csr_gather
from sandbox.data.scale import generate_columnar_corpus, uses_columnar
from sandbox.data.source import corpus_from_config
from sandbox.data.synthetic import generate_corpus
from sandbox.tasks.emoji import EmojiTask
from sandbox.tasks.text import bucket_of, featurize

SMALL = SyntheticConfig(n_users=600, n_workspaces=20, n_canaries=3, n_fresh_canaries=5)


@pytest.fixture(scope="module")
def chunked():
    corpus, manifest = generate_columnar_corpus(SMALL, chunk_users=170)  # 4 chunks
    return corpus, manifest


def test_one_chunk_is_exactly_the_string_corpus():
    strings, manifest = generate_corpus(SMALL)
    columnar, columnar_manifest = generate_columnar_corpus(SMALL, chunk_users=10_000)
    assert columnar.to_corpus().fingerprint() == strings.fingerprint()
    assert columnar_manifest == manifest
    assert columnar.n_messages == strings.n_messages and columnar.n_users == strings.n_users
    assert columnar.texts[5] == strings.texts[5] and columnar.reactions[7] == strings.reactions[7]
    assert columnar.message_ids[-1] == strings.message_ids[-1]
    assert list(columnar.channels[[0, 3]]) == list(strings.channels[[0, 3]])


def test_chunks_are_another_draw_of_the_same_population(chunked):
    corpus, manifest = chunked
    strings, string_manifest = generate_corpus(SMALL)
    assert manifest == string_manifest  # canaries are drawn whole, before the chunks
    assert corpus.n_messages == strings.n_messages  # message counts come from the population
    assert np.array_equal(np.bincount(corpus.message_user), np.bincount(strings.message_user))
    assert corpus.fingerprint() != generate_columnar_corpus(SMALL, chunk_users=10_000)[0].fingerprint()
    texts = corpus.to_corpus().texts.tolist()
    for canary in manifest.planted:  # each planted canary sits with its hosts, repeats times
        hosts = {int(u.split("-")[1]) for u in canary.user_ids}
        rows = [m for m, t in enumerate(texts) if t == canary.text]
        assert len(rows) == canary.repeats * len(hosts)
        assert set(corpus.message_user[rows].tolist()) == hosts
    per_user = corpus.timestamps[1:] > corpus.timestamps[:-1]
    same_user = corpus.message_user[1:] == corpus.message_user[:-1]
    assert per_user[same_user].all()


def test_generation_is_deterministic(chunked):
    again, _ = generate_columnar_corpus(SMALL, chunk_users=170)
    assert again.fingerprint() == chunked[0].fingerprint()


@pytest.mark.parametrize(("bigrams", "max_tokens"), [(True, 32), (True, 5), (False, 8)])
def test_features_from_word_ids_equal_featurize_on_the_strings(chunked, bigrams, max_tokens):
    corpus = chunked[0]
    config = EmojiTaskConfig(bigrams=bigrams, max_tokens=max_tokens, n_buckets=997)
    rows = np.random.default_rng(0).permutation(corpus.n_messages)[:3000]
    fast = corpus.texts.features(
        rows, bucket=lambda t: bucket_of(t, config.n_buckets), max_tokens=max_tokens, bigrams=bigrams
    )
    assert fast.dtype == np.int32
    assert torch.equal(torch.from_numpy(fast).long(), featurize(corpus.texts[rows], config=config))


def test_emoji_examples_on_one_chunk_equal_the_string_layout():
    task = EmojiTask()
    strings = task.prepare(DataConfig(synthetic=SMALL), np.random.default_rng(1))
    columnar_config = DataConfig(synthetic=SyntheticConfig(**{**SMALL.__dict__, "layout": "columnar"}))
    columnar = task.prepare(columnar_config, np.random.default_rng(1))
    assert type(columnar.corpus).__name__ == "ColumnarCorpus"
    assert columnar.classes == strings.classes
    for a, b in ((columnar.train, strings.train), (columnar.test, strings.test)):
        assert torch.equal(a.tokens.long(), b.tokens) and torch.equal(a.labels, b.labels)
        assert np.array_equal(a.message_index, b.message_index)


def test_fingerprint_changes_with_one_token(chunked):
    corpus = chunked[0]
    before = corpus.fingerprint()
    changed = generate_columnar_corpus(SMALL, chunk_users=170)[0]
    changed.texts.tokens[0] = (changed.texts.tokens[0] + 1) % len(changed.texts.words)
    assert changed.fingerprint() != before


def test_auto_layout_switches_at_the_threshold():
    assert not uses_columnar(SyntheticConfig(n_users=COLUMNAR_FROM - 1))
    assert uses_columnar(SyntheticConfig(n_users=COLUMNAR_FROM))
    assert uses_columnar(SyntheticConfig(n_users=600, n_workspaces=20, layout="columnar"))
    assert not uses_columnar(SyntheticConfig(n_users=COLUMNAR_FROM, layout="strings"))


@pytest.mark.parametrize(
    ("field", "value"), [("personal_rate", 0.3), ("everyday_rate", 0.5), ("channel_discovery", True)]
)
def test_what_the_chunked_generator_does_not_draw_is_refused_naming_the_key(field, value):
    config = SyntheticConfig(**{**SMALL.__dict__, "layout": "columnar", field: value})
    with pytest.raises(ConfigError, match=rf"data\.{field}=.*data\.layout=strings"):
        corpus_from_config(DataConfig(synthetic=config))


def test_a_bad_layout_is_refused():
    with pytest.raises(ValueError, match="layout"):
        SyntheticConfig(layout="parquet")


def test_row_ids_and_csr_gather_by_hand():
    ids = RowIds(12)
    assert ids[3] == "msg-0000003" and ids[-1] == "msg-0000011" and len(ids) == 12
    assert list(ids[[0, 2]]) == ["msg-0000000", "msg-0000002"]
    values, offsets = np.array([10, 11, 12, 13, 14]), np.array([0, 2, 2, 5])
    got, lengths = csr_gather(values, offsets, np.array([2, 0, 1]))
    assert got.tolist() == [12, 13, 14, 10, 11] and lengths.tolist() == [3, 2, 0]
