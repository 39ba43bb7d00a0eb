"""audit=server_view on hand-made updates: rows seen, the dictionary attack, the intersection attack, details.

The expected buckets are computed here from CRC32 directly (zlib.crc32(token) % 63 + 1 for 64
buckets), not through ``bucket_of``, and the expected precisions by counting the dictionary words
that share a bucket by hand.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from sandbox.audit.server_view import (
    NO_DETAILS,
    detail_recovered,
    dictionary_of,
    mean_ci,
    personal_details_by_client,
    recovery,
    rows_by_intersection,
    rows_seen_individually,
    run_server_view_audit,
)
from sandbox.config import ConfigError, resolve
from sandbox.federated.aggregate import SparseDelta, Update
from sandbox.federated.clients import partition_clients
from sandbox.federated.server_view import EmbeddingLayout, ServerView
from sandbox.prepare import Seeds, prepare
from sandbox.record import Outcome
from sandbox.record.schema import Audit
from sandbox.tasks.text import HashedBagModel
from tests.conftest import TINY, compose_config

N_BUCKETS, DIM = 64, 2
# by hand: alice, marble, mirror → 48; forest, violet → 27; jones, window → 28; apple → 54; river 49; stone 33
DICTIONARY = ["alice", "marble", "mirror", "forest", "violet", "jones", "window", "apple", "river", "stone"]
WORDS = {0: {"alice", "forest"}, 1: {"jones", "apple"}}


def crc_bucket(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % (N_BUCKETS - 1) + 1


def tiny_model() -> HashedBagModel:
    torch.manual_seed(0)
    return HashedBagModel(config=SimpleNamespace(n_buckets=N_BUCKETS, embedding_dim=DIM, hidden_dim=3), n_classes=2)


def sparse_update(rows, size: int, *, zero_rows=(), dense_tail: int = 5) -> Update:
    """An update touching exactly ``rows`` (non-zero), listing ``zero_rows`` with zero values, plus the
    last ``dense_tail`` coordinates (the MLP: outside the embedding table)."""
    coords = sorted({r * DIM + j for r in [*rows, *zero_rows] for j in range(DIM)})
    index = torch.tensor([*coords, *range(size - dense_tail, size)], dtype=torch.int64)
    values = torch.tensor(
        [0.0 if c // DIM in zero_rows else 0.1 + c * 1e-3 for c in coords] + [0.5] * dense_tail, dtype=torch.float32
    )
    return Update(delta=SparseDelta(index=index, values=values, size=size), n_examples=3, loss=1.0)


def test_the_layout_is_the_first_embedding_weight():
    model = tiny_model()
    assert EmbeddingLayout.of(model) == EmbeddingLayout(offset=0, rows=N_BUCKETS, dim=DIM)
    with pytest.raises(ConfigError, match="audit.attack: server_view"):
        EmbeddingLayout.of(torch.nn.Linear(3, 2))


def test_recovery_of_two_clients_from_their_updates():
    model = tiny_model()
    size = parameters_to_vector(model.parameters()).numel()
    view = ServerView(EmbeddingLayout.of(model))
    buckets = {c: sorted(crc_bucket(w) for w in words) for c, words in WORDS.items()}
    assert buckets == {0: [27, 48], 1: [28, 54]}  # the hand computation above
    view.on_update(1, 0, sparse_update(buckets[0], size, zero_rows=(0, 5)))  # rows 0 and 5 listed but unchanged
    view.on_update(1, 1, sparse_update(buckets[1], size))
    view.on_update(2, 0, sparse_update(buckets[0][:1], size))  # a later round: a subset (union is what counts)
    dense = sparse_update(buckets[1], size).delta.to_dense()
    view.on_update(2, 1, Update(delta=dense, n_examples=3, loss=1.0))  # a dense delta: the same rows
    obs = view.observations()
    assert (obs.updates_seen, obs.aggregates_seen) == (4, 0)
    assert [r.tolist() for _, r in obs.individual[0]] == [[27, 48], [27]]
    assert [r.tolist() for _, r in obs.individual[1]] == [[28, 54], [28, 54]]
    assert obs.norms[1][0] == pytest.approx(float(dense.norm()))
    rows = rows_seen_individually(obs)
    assert {c: r.tolist() for c, r in rows.items()} == buckets

    dictionary = dictionary_of({"hand": DICTIONARY}, N_BUCKETS)
    out = recovery(rows, WORDS, dictionary, resamples=200, confidence=0.95, seed=0)
    assert out["recall"]["mean"] == 1.0 and out["n_clients"] == 2
    # client 0: bucket 48 holds alice, marble, mirror and 27 forest, violet → 2 of 5; client 1: jones, window, apple → 2 of 3
    assert out["precision"]["mean"] == pytest.approx((2 / 5 + 2 / 3) / 2)
    assert out["dictionary_coverage"]["mean"] == 1.0
    # the most likely candidate per row is the first listed: alice (48), forest (27), jones (28), apple (54)
    assert out["most_likely_candidate"]["recall"]["mean"] == 1.0
    assert out["most_likely_candidate"]["precision"]["mean"] == 1.0


def test_a_word_missing_from_the_dictionary_is_not_recovered():
    dictionary = dictionary_of({"hand": DICTIONARY}, N_BUCKETS)
    truth = {0: {"alice", "zebra"}}  # zebra is not in the dictionary
    rows = {0: np.array([crc_bucket("alice"), crc_bucket("zebra")])}
    out = recovery(rows, truth, dictionary, resamples=200, confidence=0.95, seed=0)
    assert out["recall"]["mean"] == 0.5 and out["dictionary_coverage"]["mean"] == 0.5


def test_the_intersection_attack_on_hand_made_aggregates():
    model = tiny_model()
    size = parameters_to_vector(model.parameters()).numel()
    view = ServerView(EmbeddingLayout.of(model), tolerance=1e-4)
    rows = {0: [27, 48], 1: [28, 54], 2: [5, 9]}

    def total(clients) -> torch.Tensor:
        dense = torch.full((size,), 1e-6)  # a decoded sum's quantization error, within the tolerance
        for c in clients:
            dense += sparse_update(rows[c], size).delta.to_dense()
        return dense

    view.on_aggregate(1, np.array([0, 1]), total([0, 1]))
    view.on_aggregate(2, np.array([0, 2]), total([0, 2]))
    obs = view.observations()
    assert (obs.updates_seen, obs.aggregates_seen) == (0, 2) and not obs.individual
    assert obs.aggregates[0][2].tolist() == [27, 28, 48, 54]
    got = {c: r.tolist() for c, r in rows_by_intersection(obs).items()}
    # client 0 took part in both: {27, 48, 28, 54} ∩ {27, 48, 5, 9}; clients 1 and 2 in one round each
    assert got == {0: [27, 48], 1: [27, 28, 48, 54], 2: [5, 9, 27, 48]}
    exact = ServerView(EmbeddingLayout.of(model))  # tolerance 0: the error makes every row non-zero
    exact.on_aggregate(1, np.array([0, 1]), total([0, 1]))
    assert len(exact.observations().aggregates[0][2]) == N_BUCKETS


def test_a_detail_is_recovered_only_when_all_its_tokens_are():
    assert detail_recovered("Alice Smith", {"alice", "smith"})
    assert not detail_recovered("Alice Smith", {"alice"})
    assert not detail_recovered("", {"alice"})
    assert detail_recovered("alice.smith@example.com", {"alice", "smith", "example", "com"})
    dictionary = dictionary_of({"hand": [*DICTIONARY, "smith"]}, N_BUCKETS)
    rows = {0: np.array([crc_bucket("alice"), crc_bucket("forest")])}  # smith (36) is not among them
    details = {0: {"names": ["Alice", "Alice Smith", "Marble"], "contacts": ["forest@violet"]}}
    out = recovery(rows, WORDS, dictionary, details_by_client=details, resamples=200, confidence=0.95, seed=0)
    names, contacts = out["personal_details"]["names"], out["personal_details"]["contacts"]
    # Alice: yes; Alice Smith: smith not recovered; Marble: recovered by collision with alice (never typed)
    assert (names["details"], names["recovered"], names["in_training_text"]) == (3, 2, 1)
    assert names["share_recovered"] == pytest.approx(2 / 3)
    assert (contacts["details"], contacts["recovered"], contacts["in_training_text"]) == (1, 1, 0)


def test_mean_ci():
    assert mean_ci([0.5], resamples=100, confidence=0.95, seed=0) == {"mean": 0.5, "ci": None, "n": 1}
    assert mean_ci([1.0, 1.0, 1.0], resamples=100, confidence=0.95, seed=0)["ci"] == [1.0, 1.0]
    got = mean_ci([0.0, 1.0, None, 0.5, 0.25], resamples=2000, confidence=0.95, seed=0)
    assert got["n"] == 4 and got["mean"] == pytest.approx(0.4375)
    assert 0.0 <= got["ci"][0] < 0.4375 < got["ci"][1] <= 1.0


# -- on a tiny corpus: personal details, the section under secure aggregation ---------------------
FEDERATED = [*TINY, "mode=federated", "federation.rounds=2", "federation.sample_rate=0.3", "audit=server_view"]


@pytest.fixture(scope="module")
def tiny():
    cfg = resolve(compose_config([*FEDERATED, "privacy=none", "federation.client_batch=0"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    return cfg, data, partition_clients(data.corpus, data.train, unit="user")


def fake_personal(monkeypatch, names, contacts):
    module = types.ModuleType("sandbox.data.personal")
    module.personal_details = lambda config: SimpleNamespace(names=names, contacts=contacts)
    monkeypatch.setitem(sys.modules, "sandbox.data.personal", module)


def test_personal_details_by_client(tiny, monkeypatch):
    cfg, data, partition = tiny
    monkeypatch.setitem(sys.modules, "sandbox.data.personal", None)  # the module is missing
    details, why = personal_details_by_client(cfg, data, partition, [0, 1])
    assert details is None and why.startswith(NO_DETAILS)
    n = data.corpus.n_users
    fake_personal(monkeypatch, [()] * n, [()] * n)
    assert personal_details_by_client(cfg, data, partition, [0]) == (None, NO_DETAILS)
    names = [(f"Name{u}",) for u in range(n)]
    fake_personal(monkeypatch, names, [(f"{u}@mail",) for u in range(n)])
    details, why = personal_details_by_client(cfg, data, partition, [0, 3])
    owner = int(partition.owners[3])  # unit=user: client 3 is this corpus user
    assert why is None and details[3] == {"names": [f"Name{owner}"], "contacts": [f"{owner}@mail"]}


def secagg_observations(cfg, data, partition, cohorts):
    """What a server under secure aggregation sees: per round, the sum over a cohort (its rows' union)."""
    model = data.new_model(cfg, Seeds.from_seed(cfg.seed))
    layout = EmbeddingLayout.of(model)
    view = ServerView(layout)
    for r, cohort in enumerate(cohorts, start=1):
        total = torch.zeros(parameters_to_vector(model.parameters()).numel())
        for c in cohort:
            buckets = np.unique(partition.data(c, data.train).tokens.numpy())
            buckets = buckets[buckets > 0]
            total.view(-1)[: layout.end].view(layout.rows, layout.dim)[torch.from_numpy(buckets)] += 0.01
        view.on_aggregate(r, np.array(cohort), total)
    return view.observations()


def test_the_section_under_secure_aggregation(tiny, monkeypatch):
    cfg, data, partition = tiny
    cfg = dataclasses.replace(cfg, federation=dataclasses.replace(cfg.federation, secagg=True))
    # client 0 takes part in three rounds: the intersection of the cohorts' rows is close to its own
    obs = secagg_observations(cfg, data, partition, [[0, 1, 2], [0, 3, 4], [0, 5, 6]])
    outcome = Outcome(model=None, curve=[], privacy={}, status="completed", engine="inprocess")
    outcome = dataclasses.replace(outcome, observations={"server_view": obs})
    section = run_server_view_audit(cfg, data, outcome, out_dir=None, privacy={"epsilon": None})
    assert section["secure_aggregation"] and section["clients_seen_individually"] == {"count": 0, "share": 0.0}
    assert section["individual"]["result"] == "not_applicable"
    agg = section["aggregate_intersection"]
    assert agg["result"] == "measured" and agg["n_clients"] == 7 and agg["recall"]["mean"] == 1.0
    assert section["aggregates_seen"] == 3 and section["updates_seen"] == 0
    assert section["control"]["ran_on"] == "none" and "server_view_retrain_control" in section["control"]["reason"]
    assert section["result"] == "measured" and section["finding"].startswith("Under secure aggregation")
    assert section["models_trained"] == []
    # client 0's intersection keeps its own rows and drops most of its cohorts' (the union one round shows)
    own = np.unique(partition.data(0, data.train).tokens.numpy())
    own = own[own > 0]
    inter = rows_by_intersection(obs)[0]
    assert set(own.tolist()) <= set(inter.tolist()) and len(inter) < len(obs.aggregates[0][2])
    assert Audit.from_json(section).get("finding") == section["finding"]  # the typed record accepts the section


def test_a_secure_aggregation_run_retrains_its_control_when_asked(tiny):
    cfg, data, partition = tiny
    cfg = dataclasses.replace(
        cfg,
        federation=dataclasses.replace(cfg.federation, secagg=True),
        audit=dataclasses.replace(cfg.audit, server_view_retrain_control=True),
    )
    obs = secagg_observations(cfg, data, partition, [[0, 1], [0, 2]])
    outcome = dataclasses.replace(
        Outcome(model=None, curve=[], privacy={}, status="completed", engine="inprocess"),
        observations={"server_view": obs},
    )
    section = run_server_view_audit(cfg, data, outcome, out_dir=None, privacy={"epsilon": None})
    control = section["control"]
    assert control["ran_on"] == "control run (no secure aggregation)" and control["passed"]
    assert control["audit"]["individual"]["recall"]["mean"] == 1.0
    assert control["audit"]["aggregate_intersection"]["result"] == "not_applicable"
    assert [m["what"] for m in section["models_trained"]] == ["positive control (no secure aggregation)"]
