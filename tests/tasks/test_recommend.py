"""Recommendation tasks (task=jobs|channels): data, consent, hold-out, features, ranking metrics, config, runs."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from sandbox.config import ConfigError, resolve
from sandbox.data import generate_corpus
from sandbox.data.channels import channel_memberships
from sandbox.data.jobs import JobsConfig, generate_jobs
from sandbox.data.partition import UserSplit
from sandbox.data.synthetic import SyntheticConfig
from sandbox.prepare import Seeds, prepare
from sandbox.tasks.emoji import PAD, bucket_of, tokenize
from sandbox.tasks.recommend import (
    RecCorpus,
    RecData,
    RecommendTaskConfig,
    channels_data,
    jobs_data,
    ranking_metrics,
    shown_lists,
)
from tests.conftest import compose_config, run_in

JOBS = JobsConfig(n_members=300, n_postings=60, member_opt_out_rate=0.1)
JOBS_TASK = RecommendTaskConfig(n_buckets=1024, max_tokens=64, jobs=JOBS)
CHANNELS_TASK = RecommendTaskConfig(name="channels", n_buckets=1024, max_tokens=64)


@pytest.fixture(scope="module")
def jobs() -> RecData:
    return jobs_data(JOBS_TASK, np.random.default_rng(0))


@pytest.fixture(scope="module")
def channels():
    corpus, _ = generate_corpus(
        SyntheticConfig(
            n_users=150,
            n_workspaces=8,
            n_canaries=0,
            n_fresh_canaries=0,
            topic_channels_per_workspace=12,
            user_opt_out_rate=0.1,
            workspace_opt_out_rate=0.2,
        )
    )
    return corpus, channels_data(CHANNELS_TASK, corpus, np.random.default_rng(0))


def _history_counts(data: RecData) -> tuple[np.ndarray, np.ndarray]:
    n = data.corpus.n_users
    return (np.bincount(data.inter_user, minlength=n), np.bincount(data.inter_user[data.held_out], minlength=n))


# -- data: determinism, consent, hold-out, features ---------------------------------------------
def test_jobs_data_is_a_function_of_the_config_and_the_rng_seed(jobs):
    again = jobs_data(JOBS_TASK, np.random.default_rng(0))
    assert torch.equal(again.features, jobs.features)
    for name in ("inter_user", "inter_item", "held_out", "sensitive"):
        assert np.array_equal(getattr(again, name), getattr(jobs, name)), name
    assert np.array_equal(again.split.train_users, jobs.split.train_users)
    assert np.array_equal(again.split.test_users, jobs.split.test_users)
    assert again.corpus.fingerprint() == jobs.corpus.fingerprint()

    other_rng = jobs_data(JOBS_TASK, np.random.default_rng(1))  # same corpus, other split and hold-out
    assert other_rng.corpus.fingerprint() == jobs.corpus.fingerprint()
    assert not np.array_equal(other_rng.split.test_users, jobs.split.test_users)
    assert not np.array_equal(other_rng.held_out, jobs.held_out)

    other_corpus = jobs_data(replace(JOBS_TASK, jobs=replace(JOBS, seed=1)), np.random.default_rng(0))
    assert other_corpus.corpus.fingerprint() != jobs.corpus.fingerprint()
    assert not torch.equal(other_corpus.features, jobs.features)
    assert not np.array_equal(other_corpus.inter_item[:50], jobs.inter_item[:50])


def test_jobs_opted_out_members_never_reach_the_split_or_the_examples(jobs):
    opted_out = np.flatnonzero(generate_jobs(JOBS).member_opted_out)
    assert len(opted_out) >= 10  # the check below has something to find
    train, test = jobs.split.train_users, jobs.split.test_users
    assert not set(train) & set(test)
    assert not (set(train) | set(test)) & set(opted_out)
    assert jobs.split.n_excluded_users == len(opted_out)
    assert len(train) + len(test) + len(opted_out) == JOBS.n_members
    assert not np.isin(jobs.inter_user, opted_out).any()
    assert (jobs.features[opted_out] == PAD).all()  # their messages and profile are not even read
    everyone = np.arange(JOBS.n_members)
    for held_out in (False, True):
        rows = jobs.examples(everyone, held_out=held_out)
        assert len(rows) > 0 and not np.isin(rows.user, opted_out).any()
        assert not jobs.matrix(opted_out, held_out=held_out).any()
    # the training rows are the training members' history only
    rows = jobs.examples(train, held_out=False)
    assert set(rows.user) <= set(train) and not jobs.held_out[rows.message_index].any()
    assert torch.equal(rows.tokens, jobs.features[rows.user])
    assert torch.equal(rows.labels, torch.from_numpy(jobs.inter_item[rows.message_index]))


def test_channels_opted_out_users_never_reach_the_split_or_the_examples(channels):
    corpus, data = channels
    excluded = np.flatnonzero(~corpus.user_consented())
    assert corpus.workspace_opted_out.any() and corpus.user_opted_out.any() and len(excluded) >= 10
    train, test = data.split.train_users, data.split.test_users
    assert not set(train) & set(test)
    assert not (set(train) | set(test)) & set(excluded)
    assert not np.isin(data.inter_user, excluded).any()
    for held_out in (False, True):
        rows = data.examples(np.arange(corpus.n_users), held_out=held_out)
        assert len(rows) > 0 and not np.isin(rows.user, excluded).any()
    assert (data.features[excluded] == PAD).all()  # their messages are not even read


@pytest.mark.parametrize("task", ["jobs", "channels"])
def test_every_user_keeps_history_and_about_the_holdout_fraction_is_held_out(jobs, channels, task):
    data = jobs if task == "jobs" else channels[1]
    counts, held = _history_counts(data)
    users = np.concatenate([data.split.train_users, data.split.test_users])
    assert (counts[users] >= 1).all()
    assert (held[users] < counts[users]).all()  # ≥ 1 history interaction each
    # floor(f · n) of each user's n interactions, at most n − 1
    expected = np.minimum(np.floor(0.2 * counts[users]).astype(int), counts[users] - 1)
    assert np.array_equal(held[users], expected)
    share = data.held_out.mean()
    assert 0.1 < share <= 0.2, share  # below f: flooring (a user with < 5 interactions holds out none)


def test_channels_holdout_is_each_users_latest_joins(channels):
    corpus, data = channels
    users = np.concatenate([data.split.train_users, data.split.test_users])
    members = channel_memberships(corpus, users=users)
    assert np.array_equal(members.user, data.inter_user)
    names = np.array(data.corpus.item_names)  # an item is a channel name, shared across workspaces
    assert np.array_equal(names[data.inter_item], members.channel_names[members.channel].astype(str))
    n_checked = 0
    for user in np.unique(data.inter_user):
        mine = data.inter_user == user
        held, history = members.joined[mine & data.held_out], members.joined[mine & ~data.held_out]
        assert len(history) >= 1
        if len(held):
            assert held.min() >= history.max(), user
            n_checked += 1
    assert n_checked >= 20
    # a user's channels exist in their workspace, and some names exist in several workspaces
    assert data.corpus.item_available[corpus.user_workspace[data.inter_user], data.inter_item].all()
    assert (data.corpus.item_available.sum(0) > 1).any()


def test_jobs_features_are_the_profile_then_the_members_own_words(jobs):
    corpus = generate_jobs(JOBS)
    cat = corpus.catalogue
    members = jobs.split.train_users[:25]
    for m in members:
        profile = [
            "occ" + re.sub("[^a-z0-9]", "", cat.label[corpus.member_occupation[m]].lower()),
            "region" + re.sub("[^a-z0-9]", "", corpus.member_region[m].lower()),
            f"exp{min(int(corpus.member_experience[m]) // 5, 6)}",
        ]
        row = jobs.features[m].tolist()
        assert row[:3] == [bucket_of(w, JOBS_TASK.n_buckets) for w in profile]
        texts = corpus.message_text[corpus.message_member == m]
        first_words = tokenize(texts[0], bigrams=False)
        assert all(bucket_of(w, JOBS_TASK.n_buckets) in row for w in first_words)
        words = list(dict.fromkeys(profile + [w for t in texts for w in tokenize(t, bigrams=False)]))
        expected = {bucket_of(w, JOBS_TASK.n_buckets) for w in words[: JOBS_TASK.max_tokens]}
        assert set(row) - {PAD} == expected


def test_channels_features_are_the_users_own_words(channels):
    corpus, data = channels
    for user in data.split.train_users[:10]:
        texts = corpus.texts[corpus.message_user == user]
        row = set(data.features[user].tolist())
        assert all(bucket_of(w, CHANNELS_TASK.n_buckets) in row for w in tokenize(texts[0], bigrams=False))


# -- ranking metrics on a hand-made data set ----------------------------------------------------
class FixedScores:
    """A 'model' whose logits for user u are row u of a fixed table (features hold u + 1)."""

    def __init__(self, table):
        self.table = torch.tensor(table, dtype=torch.float32)

    def eval(self):
        return self

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens[:, 0] - 1]


def _tiny(interactions, *, train, test, n_items, user_workspace=None, item_workspace=None) -> RecData:
    """``interactions``: (user, item, held_out) triples."""
    user, item, held = (np.array(c) for c in zip(*interactions))
    n_users = int(max(*train, *test)) + 1
    features = torch.zeros(n_users, 3, dtype=torch.long)
    features[:, 0] = torch.arange(n_users) + 1
    workspace = np.arange(n_users) if user_workspace is None else np.asarray(user_workspace)
    corpus = RecCorpus(
        name="tiny",
        n_users=n_users,
        n_workspaces=int(workspace.max()) + 1,
        n_messages=0,
        user_workspace=workspace,
        workspace_opted_out=np.zeros(int(workspace.max()) + 1, bool),
        message_user=user,
        item_names=tuple(f"item{i}" for i in range(n_items)),
        item_available=None
        if item_workspace is None
        else np.arange(int(workspace.max()) + 1)[:, None] == np.asarray(item_workspace)[None, :],
        corpus_fingerprint="tiny",
    )
    return RecData(
        corpus=corpus,
        split=UserSplit(np.array(train), np.array(test), 0),
        features=features,
        inter_user=user,
        inter_item=item,
        held_out=held.astype(bool),
        sensitive=None,
        sensitive_name=None,
    )


def test_ranking_metrics_hand_computed_and_history_excluded():
    data = _tiny(
        [
            (0, 0, 0),
            (0, 1, 1),
            (0, 2, 1),  # user 0: history {0}, held out {1, 2}
            (1, 3, 0),
            (1, 4, 1),  # user 1: history {3}, held out {4}
            (2, 0, 0),
            (2, 4, 0),
            (2, 2, 1),  # user 2 (held-out user): history {0, 4}, held out {2}
            (3, 2, 0),
        ],  # user 3: history only: not evaluated
        train=[0, 1, 3],
        test=[2],
        n_items=5,
    )
    model = FixedScores(
        [
            [5, 4, 1, 3, 2],  # without item 0: top-2 [1, 3]: 1 of {1, 2}, at rank 1
            [0, 1, 2, 9, 3],  # without item 3: top-2 [4, 2]: hit at rank 1
            [1, 2, 3, 4, 5],  # without items 0, 4: top-2 [3, 2]: hit at rank 2 (item 4 would be first)
            [0, 0, 0, 0, 0],
        ]
    )
    d2 = 1 / math.log2(3)
    m = ranking_metrics(model, data, k=2)
    assert m["held_out_users"] == pytest.approx({"recall@2": 1.0, "ndcg@2": d2, "n_users": 1})
    assert m["training_users"] == pytest.approx(
        {"recall@2": (1 / 2 + 1) / 2, "ndcg@2": (1 / (1 + d2) + 1) / 2, "n_users": 2}
    )
    # popularity = training users' history counts [1, 0, 1, 1, 0]; ties: lower index first
    # user 2: [2, 3] hit at 1; user 0 (without 0): [2, 3] 1 of {1, 2} at rank 1; user 1 (without 3): [0, 2] miss
    assert m["held_out_users_popularity"] == pytest.approx({"recall@2": 1.0, "ndcg@2": 1.0})
    assert m["training_users_popularity"] == pytest.approx({"recall@2": 1 / 4, "ndcg@2": 1 / (1 + d2) / 2})


def test_channel_suggestions_stay_in_the_users_workspace():
    # items 0-2 in workspace 0, items 3-5 in workspace 1; users 0, 1 in workspace 0, user 2 in workspace 1
    data = _tiny(
        [(0, 0, 0), (0, 2, 1), (1, 1, 0), (1, 0, 1), (2, 3, 0), (2, 5, 1)],
        train=[0, 1],
        test=[2],
        n_items=6,
        user_workspace=[0, 0, 1],
        item_workspace=[0, 0, 0, 1, 1, 1],
    )
    model = FixedScores(
        [
            [0, 1, 2, 9, 9, 9],  # the other workspace's channels score highest
            [1, 0, 0, 8, 9, 7],
            [9, 9, 9, 0, 2, 1],
        ]
    )
    lists = shown_lists(model, data, np.array([0, 1, 2]), k=4)
    assert lists.tolist() == [[2, 1, 0, -1], [0, 1, 2, -1], [4, 5, 3, -1]]  # own channels (history too), padded
    m = ranking_metrics(model, data, k=1)
    assert m["training_users"] == pytest.approx({"recall@1": 1.0, "ndcg@1": 1.0, "n_users": 2})
    assert m["held_out_users"] == pytest.approx({"recall@1": 0.0, "ndcg@1": 0.0, "n_users": 1})  # top: 4
    assert ranking_metrics(model, data, k=2)["held_out_users"]["recall@2"] == 1.0  # then 5


# -- config --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, key",
    [
        (["task=jobs", "task.jobs.n_members=0"], "task.jobs.n_members"),
        (["task=jobs", "task.holdout_fraction=2"], "task.holdout_fraction"),
        (["task=channels", "task.holdout_fraction=0"], "task.holdout_fraction"),
        (["task=jobs", "audit=lira"], "audit.attack"),
        (["task=jobs", "mode=federated", "federation=cross_silo", "privacy=dpfedavg"], "federation.unit"),
        (["task=emoji", "audit.attack=suggestions"], "audit.attack"),
    ],
)
def test_bad_recommend_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key)):
        resolve(compose_config([*overrides, "progress=false"]))


def test_channels_may_be_federated_by_workspace():
    cfg = resolve(compose_config(["task=channels", "mode=federated", "federation=cross_silo", "privacy=dpfedavg"]))
    assert cfg.task.name == "channels" and cfg.privacy.unit == "workspace"


# -- end to end ----------------------------------------------------------------------------------
SMALL_JOBS = [
    "task=jobs",
    "task.jobs.n_members=400",
    "task.jobs.n_postings=60",
    "task.jobs.seeking_rate=0.3",
    "task.n_buckets=1024",
    "task.embedding_dim=16",
    "task.hidden_dim=16",
    "audit=suggestions",
    "audit.resamples=200",
    "progress=false",
]


def _run(tmp_path, overrides):
    return run_in(tmp_path, overrides)


def _check_recommend_record(record, *, k=10):
    assert record["status"] == "completed"
    ranking = record["metrics"]["ranking"]
    assert set(ranking) == {
        "held_out_users",
        "held_out_users_popularity",
        "held_out_users_vs_popularity",
        "training_users",
        "training_users_popularity",
        "training_users_vs_popularity",
    }
    for name, section in ranking.items():
        if name.endswith("_vs_popularity"):
            gap = section[f"recall@{k}"]
            assert gap["difference"] == pytest.approx(
                ranking[name[: -len("_vs_popularity")]][f"recall@{k}"] - ranking[name.replace("vs_", "")][f"recall@{k}"]
            )
            continue
        assert 0 <= section[f"recall@{k}"] <= 1 and 0 <= section[f"ndcg@{k}"] <= 1, name
    assert 0 < ranking["held_out_users"]["n_users"] <= record["data"]["n_test_users"]
    assert 0 < ranking["training_users"]["n_users"] <= record["data"]["n_train_users"]
    audit = record["audit"]
    assert (audit["attack"], audit["level"], audit["result"]) == ("suggestions", "user", "measured")
    assert audit["threat"] == f"top-{k} list shown to the user"
    membership = audit["membership"]
    assert 0 <= membership["auc_ci"][0] <= membership["auc"] <= membership["auc_ci"][1] <= 1
    assert (membership["n_members"], membership["n_nonmembers"]) == (
        record["data"]["n_train_users"],
        record["data"]["n_test_users"],
    )
    assert set(membership["tpr_at_fpr"]) == {"0.001", "0.01"}
    return audit


def _check_jobs_attribute(audit, record):
    attribute = audit["attribute"]
    assert attribute["name"] == "seeking" and attribute["result"] == "measured"
    n_test = record["data"]["n_test_users"]
    assert attribute["n_reference"] == n_test // 2  # the attacker knows half the held-out users
    assert attribute["members"]["n"] == record["data"]["n_train_users"]
    assert attribute["non_members"]["n"] == n_test - n_test // 2
    for group in ("members", "non_members"):
        g = attribute[group]
        assert 0 < g["base_rate"] < 1
        lo, hi = g["advantage_ci"]
        assert -1 <= lo <= g["advantage"] <= hi <= 1
        assert g["auc_ci"][0] <= g["auc"] <= g["auc_ci"][1]
    assert attribute["gap"] == pytest.approx(attribute["members"]["advantage"] - attribute["non_members"]["advantage"])


def test_central_jobs_run_records_ranking_and_the_suggestions_audit(tmp_path):
    record = _run(tmp_path, [*SMALL_JOBS, "train.epochs=2", "privacy=none"])
    assert record["task"] == "jobs" and record["mode"] == "central"
    data = record["data"]
    assert data["n_users"] == 400 and data["n_classes"] == 60 and data["n_opted_out_users"] > 0
    assert data["n_train_users"] + data["n_test_users"] + data["n_opted_out_users"] == 400
    _check_jobs_attribute(_check_recommend_record(record), record)
    assert (tmp_path / "model.pt").exists() and (tmp_path / "record.json").exists()


def test_federated_dpfedavg_jobs_run_is_user_level(tmp_path):
    record = _run(
        tmp_path,
        [
            *SMALL_JOBS,
            "mode=federated",
            "privacy=dpfedavg",
            "privacy.noise_multiplier=1.0",
            "privacy.target_epsilon=null",
            "federation.rounds=3",
            "federation.sample_rate=0.5",
        ],
    )
    assert record["task"] == "jobs" and record["mode"] == "federated" and record["engine"] == "inprocess"
    p = record["privacy"]
    assert (p["mechanism"], p["unit"], p["steps"]) == ("dpfedavg", "user", 3)
    assert p["neighbouring_relation"] == "add/remove one user" and 0 < p["epsilon"] < math.inf
    data = record["data"]
    assert data["client_unit"] == "user" and data["n_clients"] == data["n_train_users"]  # one client per member
    assert p["delta"] < 1 / data["n_clients"]
    _check_jobs_attribute(_check_recommend_record(record), record)


def test_channels_run_infers_seeking_and_without_it_has_no_attribute_to_infer(tmp_path):
    tiny = [
        "task=channels",
        "data.n_users=300",
        "data.n_workspaces=6",
        "data.n_canaries=0",
        "data.n_fresh_canaries=5",
        "task.n_buckets=1024",
        "task.embedding_dim=16",
        "task.hidden_dim=16",
        "train.epochs=2",
        "privacy=none",
        "audit=suggestions",
        "audit.resamples=200",
        "progress=false",
    ]
    record = _run(tmp_path / "seeking", tiny)
    assert record["task"] == "channels"
    # task.topic_channels=40 reached the corpus: more channels than 6 workspaces × (3 default topics + 2)
    assert record["data"]["n_workspaces"] == 6 and record["data"]["n_classes"] > 6 * 5
    assert record["config"]["data"]["seeking_rate"] == 0.15  # task.seeking_rate reached the corpus
    _check_jobs_attribute(_check_recommend_record(record), record)  # the channel task's seeking users
    none = _run(tmp_path / "none", [*tiny, "task.seeking_rate=0"])
    assert none["audit"]["attribute"]["result"] == "not_applicable" and "name" not in none["audit"]["attribute"]


def test_channels_sensitive_attribute_is_the_generators_seeking_draw():
    from sandbox.data.synthetic import draw_seeking

    cfg = resolve(compose_config(["task=channels", "data.n_users=300", "data.n_workspaces=6"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    assert data.extra.sensitive_name == "seeking"
    assert np.array_equal(data.extra.sensitive, draw_seeking(cfg.data.synthetic)) and data.extra.sensitive.any()
    assert "#careers" in data.extra.corpus.item_names


def test_difference_to_popularity_has_a_paired_bootstrap_ci_computed_per_user():
    """The per-user differences behind ``…_vs_popularity`` equal the two rankers' per-user recall, and
    the interval is scipy's percentile bootstrap of their mean (recomputed here independently)."""
    from scipy.stats import bootstrap

    from sandbox.tasks.recommend import _ranking, popularity, ranking_metrics, user_scores

    cfg = resolve(compose_config(["task=channels", "data.n_users=600", "data.n_workspaces=20", "progress=false"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    model = data.new_model(cfg, Seeds.from_seed(cfg.seed))  # untrained: differences of both signs
    rec, users = data.extra, data.extra.split.test_users
    out = ranking_metrics(model, rec, k=10, resamples=500, seed=3)["held_out_users_vs_popularity"]["recall@10"]
    ours, theirs = (
        _ranking(user_scores(model, rec, users), rec, users, 10),
        _ranking(popularity(rec, users), rec, users, 10),
    )
    d = (ours.per_user_recall - theirs.per_user_recall)[~np.isnan(ours.per_user_recall)]
    assert out["difference"] == pytest.approx(ours.recall - theirs.recall) == pytest.approx(d.mean())
    ci = bootstrap(
        (d,), np.mean, n_resamples=500, method="percentile", random_state=np.random.default_rng(3)
    ).confidence_interval
    assert out["ci"] == pytest.approx([ci.low, ci.high]) and out["ci"][0] < out["difference"] < out["ci"][1]
