"""Recommendation tasks: job suggestions (``task=jobs``) and channel suggestions (``task=channels``).

Both are a two-tower recommender whose **user tower runs on the client**: a user is
represented by a hashed bag of words of their own private messages (and, for jobs, their
profile: occupation, region, experience), pooled into a vector; the item tower is an item
embedding (the output layer). Scores are user vector · item vectors, trained with a softmax
over all items on the user's interactions ("which posting/channel next"). Nothing per user is
kept on the server: the tower weights and item embeddings are what federated training
aggregates (clipped and noised under DP-FedAvg), and a user's representation is recomputed
on the client from data that never leaves it. The network is ``EmojiModel`` (same sparse,
batched, Opacus-friendly code path) with items as classes.

Data:

* jobs: ``sandbox.data.jobs`` (real occupation table); one item = one posting; a member's
  interactions (view/save/apply) are positives; a random ``holdout_fraction`` of each member's
  interactions is held out (the corpus has no timestamps).
* channels: the message corpus; one item = one channel name (``#boxing``), shared by the
  workspaces that have that channel; a user's channels are where they posted; each user's
  latest ``holdout_fraction`` of joins is held out; a user is shown only channels that their
  own workspace has.

Users are split into training and held-out users (``test_fraction``) after opted-out users
(and workspaces) are removed, so they never reach training.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import sparse

from sandbox.config.schema import RECOMMEND_TASKS, ConfigError, DataConfig, RecommendTaskConfig
from sandbox.data import corpus_from_config
from sandbox.data.channels import channel_memberships, hold_out_latest
from sandbox.data.jobs import JobsCorpus, generate_jobs
from sandbox.data.partition import UserSplit, split_consenting, split_users
from sandbox.data.synthetic import draw_seeking
from sandbox.tasks.base import Examples, TaskData
from sandbox.tasks.ranking import RankingMetrics, evaluate_ranking, popularity_scores, top_k_items
from sandbox.tasks.text import HashedBagModel, evaluate, featurize, most_frequent_baseline, tokenize

TASKS = RECOMMEND_TASKS
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class RecExamples:
    """One row per (user, item) interaction: the user's features and the item as the label.

    ``message_index`` is the row of the interaction in ``RecCorpus.message_user`` (the name the
    federated partitioner reads), ``user`` the user index.
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    message_index: np.ndarray
    user: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class RecCorpus:
    """What the training pipeline reads of a recommendation data set (the message corpus' interface)."""

    name: str
    n_users: int
    n_workspaces: int
    n_messages: int
    user_workspace: np.ndarray  # jobs: every member is their own "workspace" (no cross-silo unit)
    workspace_opted_out: np.ndarray
    message_user: np.ndarray  # [interactions] user of each interaction
    item_names: tuple[str, ...]
    item_available: np.ndarray | None  # channels: [n_workspaces, n_items] the workspace has this channel
    corpus_fingerprint: str

    def fingerprint(self) -> str:
        return self.corpus_fingerprint


@dataclass(frozen=True)
class RecData:
    """A recommendation data set, split: features, history (trained on) and held-out interactions."""

    corpus: RecCorpus
    split: UserSplit
    features: torch.Tensor  # [n_users, max_tokens] hashed words of each user's own data
    inter_user: np.ndarray  # [I] all interactions of consenting users
    inter_item: np.ndarray
    held_out: np.ndarray  # [I] bool: held out (evaluation), else history (training for training users)
    sensitive: np.ndarray | None  # [n_users] bool attribute only the messages reveal (audits only)
    sensitive_name: str | None

    @property
    def n_items(self) -> int:
        return len(self.corpus.item_names)

    def examples(self, users: np.ndarray, *, held_out: bool) -> RecExamples:
        """Interactions of ``users`` (history or held out) as training-style rows."""
        rows = np.flatnonzero(np.isin(self.inter_user, users) & (self.held_out == held_out))
        rows = rows[np.argsort(self.inter_user[rows], kind="stable")]
        user = self.inter_user[rows]
        return RecExamples(
            tokens=self.features[user], labels=torch.from_numpy(self.inter_item[rows]), message_index=rows, user=user
        )

    def matrix(self, users: np.ndarray, *, held_out: bool) -> np.ndarray:
        """[len(users), n_items] bool: which items each user interacted with (history or held out)."""
        position = np.full(self.corpus.n_users, -1)
        position[users] = np.arange(len(users))
        keep = (position[self.inter_user] >= 0) & (self.held_out == held_out)
        out = np.zeros((len(users), self.n_items), dtype=bool)
        out[position[self.inter_user[keep]], self.inter_item[keep]] = True
        return out

    def not_shown(self, users: np.ndarray) -> np.ndarray | None:
        """[len(users), n_items] bool: items a user is never shown (channels: other workspaces)."""
        if self.corpus.item_available is None:
            return None
        return ~self.corpus.item_available[self.corpus.user_workspace[users]]


# -- building the data ------------------------------------------------------------------------
def _user_features(texts_by_user: list[list[str]], config: RecommendTaskConfig) -> torch.Tensor:
    """Each user's distinct words (in order of first use), hashed; the user tower's input."""
    joined = []
    for texts in texts_by_user:
        words = dict.fromkeys(w for t in texts for w in tokenize(t, bigrams=config.bigrams))
        joined.append(" ".join(words))
    return featurize(np.array(joined, dtype=object), config=config)


def _profile_word(prefix: str, value: str) -> str:
    return prefix + _NON_ALNUM.sub("", str(value).lower())


def _random_holdout(user: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Hold out floor(fraction · n) of each user's interactions at random, keeping at least one."""
    key = rng.random(len(user))
    order = np.lexsort((key, user))
    u = user[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    counts = np.diff(np.r_[starts, len(u)])
    position = np.arange(len(u)) - np.repeat(starts, counts)
    n_held = np.minimum(np.floor(fraction * counts).astype(np.int64), counts - 1)
    held = np.zeros(len(user), dtype=bool)
    held[order] = position < np.repeat(n_held, counts)
    return held


def jobs_data(config: RecommendTaskConfig, rng: np.random.Generator) -> RecData:
    corpus: JobsCorpus = generate_jobs(config.jobs)
    n = len(corpus.member_ids)
    consenting = np.flatnonzero(~corpus.member_opted_out)
    split = split_consenting(consenting, n_users=n, test_fraction=config.test_fraction, rng=rng)
    cat = corpus.catalogue
    texts: list[list[str]] = [[] for _ in range(n)]  # opted-out members' stay empty: never read
    for member in consenting:  # the profile first: always within max_tokens
        texts[member] = [
            " ".join(
                [
                    _profile_word("occ", cat.label[corpus.member_occupation[member]]),
                    _profile_word("region", corpus.member_region[member]),
                    f"exp{min(int(corpus.member_experience[member]) // 5, 6)}",
                ]
            )
        ]
    consents = ~corpus.member_opted_out
    for member, text in zip(corpus.message_member, corpus.message_text):
        if consents[member]:
            texts[member].append(text)
    keep = np.isin(corpus.interaction_member, consenting)
    user, item = corpus.interaction_member[keep], corpus.interaction_posting[keep]
    names = tuple(
        f"{pid} ({cat.label[o]}, {s}, {r})"
        for pid, o, s, r in zip(
            corpus.posting_ids, corpus.posting_occupation, corpus.posting_seniority, corpus.posting_region
        )
    )
    rec = RecCorpus(
        name="jobs",
        n_users=n,
        n_workspaces=n,
        n_messages=len(corpus.message_ids),
        user_workspace=np.arange(n),
        workspace_opted_out=corpus.member_opted_out.copy(),
        message_user=user,
        item_names=names,
        item_available=None,
        corpus_fingerprint=corpus.fingerprint(),
    )
    return RecData(
        corpus=rec,
        split=split,
        features=_user_features(texts, config),
        inter_user=user,
        inter_item=item,
        held_out=_random_holdout(user, config.holdout_fraction, rng),
        sensitive=corpus.member_seeking.copy(),
        sensitive_name="seeking",
    )


def channels_data(
    config: RecommendTaskConfig, corpus, rng: np.random.Generator, sensitive: np.ndarray | None = None
) -> RecData:
    """``sensitive``: [n_users] bool ground truth of the corpus' sensitive attribute (``seeking``),
    for the attribute audit only; None when the corpus has none."""

    split = split_users(corpus, test_fraction=config.test_fraction, rng=rng)
    users = np.concatenate([split.train_users, split.test_users])
    members = channel_memberships(corpus, users=users)
    _, held = hold_out_latest(members, fraction=config.holdout_fraction)
    texts: list[list[str]] = [[] for _ in range(corpus.n_users)]
    consenting = np.zeros(corpus.n_users, dtype=bool)
    consenting[users] = True
    for user in users:  # the workspace first (public to the product): its channels' popularity
        texts[user].append(f"workspace{int(corpus.user_workspace[user])}")
    # what the product knows when it suggests: messages before the user's first held-out join
    cutoff = np.full(corpus.n_users, np.iinfo(np.int64).max)
    np.minimum.at(cutoff, members.user[held], members.joined[held])
    for user, text, time in zip(corpus.message_user, corpus.texts, corpus.timestamps):
        if consenting[user] and time < cutoff[user]:
            texts[user].append(text)
    # an item is a channel *name* ("#boxing"), shared by the workspaces that have that channel:
    # what the model learns about a topic's channel carries across workspaces; a user is shown
    # only the channels their own workspace has
    names, name_of_channel = np.unique(members.channel_names.astype(str), return_inverse=True)
    available = np.zeros((corpus.n_workspaces, len(names)), dtype=bool)
    available[members.channel_workspace, name_of_channel] = True
    fingerprint = hashlib.sha256(f"{corpus.fingerprint()}|channels".encode()).hexdigest()
    rec = RecCorpus(
        name="channels",
        n_users=corpus.n_users,
        n_workspaces=corpus.n_workspaces,
        n_messages=corpus.n_messages,
        user_workspace=corpus.user_workspace,
        workspace_opted_out=corpus.workspace_opted_out,
        message_user=members.user,
        item_names=tuple(names),
        item_available=available,
        corpus_fingerprint=fingerprint,
    )
    return RecData(
        corpus=rec,
        split=split,
        features=_user_features(texts, config),
        inter_user=members.user,
        inter_item=name_of_channel[members.channel],
        held_out=held,
        sensitive=None if sensitive is None else np.asarray(sensitive, dtype=bool),
        sensitive_name=None if sensitive is None else "seeking",
    )


# -- scoring and metrics ----------------------------------------------------------------------
@torch.no_grad()
def user_scores(model, data: RecData, users: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """[len(users), n_items] scores (logits) of the model for each user, from the user's own features."""
    model.eval()
    rows = torch.from_numpy(np.asarray(users, dtype=np.int64))
    return torch.cat(
        [model(data.features[r]) for r in rows.split(batch_size)] or [torch.zeros(0, data.n_items)]
    ).numpy()


def _ranking(scores: np.ndarray, data: RecData, users: np.ndarray, k: int) -> RankingMetrics:
    exclude = data.matrix(users, held_out=False)  # items the user already has are not suggested
    hidden = data.not_shown(users)
    if hidden is not None:
        exclude = exclude | hidden
    return evaluate_ranking(scores, sparse.csr_matrix(data.matrix(users, held_out=True)), k=k, exclude=exclude)


def popularity(data: RecData, users: np.ndarray) -> np.ndarray:
    """The popularity baseline's scores [len(users), n_items]: training users' history counts.

    With workspaces (channels) the counts are those of the user's own workspace (the most
    joined channels there), ties broken by the count over all workspaces.
    """
    history = data.matrix(data.split.train_users, held_out=False)
    overall = popularity_scores(history, 1)[0]
    if data.corpus.item_available is None:
        return np.broadcast_to(overall, (len(users), data.n_items))
    by_workspace = np.zeros((data.corpus.n_workspaces, data.n_items))
    np.add.at(by_workspace, data.corpus.user_workspace[data.split.train_users], history.astype(np.float64))
    return by_workspace[data.corpus.user_workspace[users]] + overall / (overall.sum() + 1.0)


def ranking_metrics(model, data: RecData, *, k: int, resamples: int = 1000, seed: int = 0) -> dict:
    """Recall@k and NDCG@k on held-out interactions of held-out users and of training users, and popularity.

    ``…_vs_popularity``: the model minus popularity, per user, with a paired bootstrap CI (95%,
    scipy): the same users under both rankers, so the interval is about the difference itself.
    """
    from scipy.stats import bootstrap

    out = {}
    for name, users in (("held_out_users", data.split.test_users), ("training_users", data.split.train_users)):
        model_m = _ranking(user_scores(model, data, users), data, users, k)
        pop_m = _ranking(popularity(data, users), data, users, k)
        out[name] = {f"recall@{k}": model_m.recall, f"ndcg@{k}": model_m.ndcg, "n_users": model_m.n_users_evaluated}
        out[f"{name}_popularity"] = {f"recall@{k}": pop_m.recall, f"ndcg@{k}": pop_m.ndcg}
        diff = {}
        for metric, ours, theirs in (
            (f"recall@{k}", model_m.per_user_recall, pop_m.per_user_recall),
            (f"ndcg@{k}", model_m.per_user_ndcg, pop_m.per_user_ndcg),
        ):
            d = (ours - theirs)[~np.isnan(ours)]
            if len(d) < 2:
                diff[metric] = {"difference": float(d.mean()) if len(d) else None, "ci": None}
                continue
            ci = bootstrap(
                (d,),
                np.mean,
                n_resamples=resamples,
                confidence_level=0.95,
                method="percentile",
                random_state=np.random.default_rng(seed),
            ).confidence_interval
            diff[metric] = {"difference": float(d.mean()), "ci": [float(ci.low), float(ci.high)]}
        out[f"{name}_vs_popularity"] = diff
    return out


def shown_lists(model, data: RecData, users: np.ndarray, *, k: int) -> np.ndarray:
    """[len(users), k] the top-k items each user is shown (within their workspace for channels).

    Items the user already interacted with are *not* hidden: a "for you" list may repeat them.
    """
    return top_k_items(user_scores(model, data, users), k, exclude=data.not_shown(users))


# -- the tasks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecommendTask(RecommendTaskConfig):
    """A recommender over hashed user words (two towers: user words → MLP → one logit per item).

    Audited from the suggested lists (``audit=suggestions``): membership and attribute inference."""

    attacks: ClassVar[tuple[str, ...]] = ("suggestions", "canary_clients")

    def rec_data(self, data: DataConfig, rng: np.random.Generator) -> RecData:
        raise NotImplementedError

    def check(self, cfg) -> None:
        if cfg.audit.attack not in ("none", *self.attacks):
            raise ConfigError(
                f"audit.attack: task={self.name} is audited with audit=suggestions (membership and "
                f"attribute inference from the suggested lists) or, federated, audit=canary_clients; "
                f"got {str(cfg.audit.attack)!r}"
            )
        for key, ok, rule in (
            ("holdout_fraction", 0 < self.holdout_fraction < 1, "must be in (0, 1)"),
            ("top_k", self.top_k >= 1, "must be ≥ 1"),
            ("max_tokens", self.max_tokens >= 1, "must be ≥ 1"),
            ("test_fraction", 0 < self.test_fraction < 1, "must be in (0, 1)"),
            ("n_buckets", self.n_buckets >= 2, "must be ≥ 2"),
        ):
            if not ok:
                raise ConfigError(f"task.{key}: {rule}, got {getattr(self, key)}")

    def prepare(self, data: DataConfig, rng: np.random.Generator) -> TaskData:
        try:
            rec = self.rec_data(data, rng)
        except ValueError as exc:  # JobsConfig / CorpusError / a split too small: say where
            raise ConfigError(f"task={self.name}: {exc}".replace("JobsConfig.", "task.jobs.")) from None
        train = rec.examples(rec.split.train_users, held_out=False)
        test = rec.examples(rec.split.test_users, held_out=True)
        if len(train) == 0 or len(test) == 0:
            raise ConfigError(
                f"task={self.name}: no interactions among the training users or none held out "
                "among the held-out users (task.holdout_fraction)"
            )
        return TaskData(
            corpus=rec.corpus,
            manifest=None,
            split=rec.split,
            classes=rec.corpus.item_names,
            train=train,
            test=test,
            extra=rec,
        )

    def build_model(self, n_classes: int):
        return HashedBagModel(config=self, n_classes=n_classes)

    def evaluate(self, model, examples: Examples) -> dict:
        return evaluate(model, examples, k=self.top_k)

    def baseline(self, train: Examples, test: Examples, n_classes: int) -> dict:
        return most_frequent_baseline(train, test, n_classes=n_classes, k=self.top_k)

    def extra_metrics(self, model, data: TaskData, *, resamples: int, seed: int) -> dict:
        """recall@k / NDCG@k beside the top-k hit rate"""
        return {"ranking": ranking_metrics(model, data.extra, k=self.top_k, resamples=resamples, seed=seed)}

    def featurize(self, texts) -> torch.Tensor:
        return featurize(texts, config=self)

    def canary_label(self, canary) -> str | None:
        return None


@dataclass(frozen=True)
class JobsTask(RecommendTask):
    """``task=jobs``: job postings suggested to members from their messages and profile."""

    name: str = "jobs"

    def check(self, cfg) -> None:
        super().check(cfg)
        if cfg.mode == "federated" and cfg.federation.unit != "user":
            raise ConfigError(
                "federation.unit: task=jobs has members only (no workspaces): use federation=cross_device"
            )

    def rec_data(self, data: DataConfig, rng: np.random.Generator) -> RecData:
        return jobs_data(self, rng)


@dataclass(frozen=True)
class ChannelsTask(RecommendTask):
    """``task=channels``: channels suggested to users from their messages (the corpus of ``data``)."""

    name: str = "channels"

    def rec_data(self, data: DataConfig, rng: np.random.Generator) -> RecData:
        synthetic = data.synthetic if data.source == "synthetic" else None
        seeking = draw_seeking(synthetic) if synthetic is not None and synthetic.seeking_rate > 0 else None
        return channels_data(self, corpus_from_config(data)[0], rng, sensitive=seeking)
