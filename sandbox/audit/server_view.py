"""The curious-server audit (``audit=server_view``): which words of each client the server learns.

Threat: the server itself, honest in running the protocol but curious about what it receives
(``sandbox.federated.server_view`` records it). A hashed-text update is non-zero exactly on the
embedding rows of the buckets of the client's tokens (unigrams and bigrams, ``bucket_of``); the
server, knowing the hash, maps every row back to the words of a **public dictionary** that land
in that bucket: wordfreq's ``audit.server_view_dictionary`` most frequent English words, Faker's
en_US first and last names and company words, and the emoji lexicon (``sandbox.data.lexicon``). No
word of the corpus is used to build it. A bucket may hold several candidates (collisions) and a
bigram's bucket yields the unigram candidates that share it: both cost precision, not recall.

* **Individual updates** (``individual``): the rows of every update the server saw from a client,
  united over its rounds. DP-FedAvg clips the update and noises the *sum* after the server has
  seen each clipped update, so this view is the same with or without DP (central DP protects the
  released model, not what the server receives).
* **Intersection attack** (``aggregate_intersection``): under secure aggregation the server sees
  only sums over a cohort, whose rows are the union of the cohort's rows; it knows each round's
  cohort, so it intersects the rows of the sums of the rounds a client took part in.
* **Truth**: a client's distinct unigram tokens of its *training* examples (as featurised:
  ``tokenize``, truncated to ``task.max_tokens``). Per client: recall = share of its words
  recovered, precision = share of the recovered candidates that are its words, and
  ``dictionary_coverage`` = share of its words in the dictionary (recall's ceiling); the mean over
  the clients the server observed, with a percentile bootstrap CI (``scipy.stats.bootstrap``).
* **Personal details** (``sandbox.data.personal.personal_details``, when the corpus has them): a
  detail (a name, an e-mail address, a phone number) is recovered when *all* its tokens are among
  the client's recovered tokens. Names and company names come from Faker's lists, which are in the
  dictionary; an e-mail or phone number only when its tokens are (wordfreq keeps single digits, not
  longer numbers).
* **Positive control**: the attack on individual updates. A run without secure aggregation is its
  own control (it passes when the recall's CI lower end exceeds ``CONTROL_RECALL_FLOOR``; if not the
  result is ``inconclusive``: a weak attack is no evidence of privacy). A run under secure
  aggregation has no individual updates: with ``audit.server_view_retrain_control=true`` the same
  config is trained once more without secure aggregation (one more training run, listed in
  ``models_trained``) and attacked; otherwise the control is recorded as not run, with why.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sandbox.audit.harness import model_entry
from sandbox.config import ConfigError, RunConfig
from sandbox.data.lexicon import FILLER_WORDS, REACTION_EMOJI, emoji_keywords, topic_vocabulary
from sandbox.federated.clients import ClientPartition, partition_clients
from sandbox.federated.server_view import ServerViewObservations
from sandbox.prepare import Prepared, Seeds
from sandbox.tasks.text import bucket_of, tokenize
from sandbox.training import train_model

THREAT = "curious server (sees what the server receives)"
CONTROL_RECALL_FLOOR = 0.5  # the control's attack works when its mean recall's CI lower end is above this
NO_DETAILS = "no personal details in this corpus"


# -- the attacker's dictionary ----------------------------------------------------------------------
@dataclass(frozen=True)
class Dictionary:
    """Public candidate tokens grouped by bucket: ``tokens[order[starts[b]:starts[b + 1]]]`` land in bucket b."""

    tokens: np.ndarray  # str, sorted unique candidate tokens
    buckets: np.ndarray  # int64, bucket_of(token)
    rank: np.ndarray  # int64, the attacker's prior: lower = more likely (wordfreq's frequency order first)
    n_buckets: int
    sources: dict  # source → number of distinct tokens it contributed
    _order: np.ndarray = field(init=False, repr=False)
    _starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        order = np.argsort(self.buckets, kind="stable")
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_starts", np.searchsorted(self.buckets[order], np.arange(self.n_buckets + 1)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        i = np.searchsorted(self.tokens, token)
        return bool(i < len(self.tokens) and self.tokens[i] == token)

    def candidates(self, rows: np.ndarray) -> set[str]:
        """Every dictionary token whose bucket is one of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[(rows >= 0) & (rows < self.n_buckets)]
        if not len(rows):
            return set()
        picked = [self._order[self._starts[r] : self._starts[r + 1]] for r in rows]
        return set(self.tokens[np.concatenate(picked)].tolist())

    def best_candidates(self, rows: np.ndarray) -> set[str]:
        """Per row, only its most likely candidate (lowest ``rank``): fewer collisions, at some recall."""
        out = set()
        for r in np.unique(np.asarray(rows, dtype=np.int64)):
            if 0 <= r < self.n_buckets and self._starts[r] < self._starts[r + 1]:
                picked = self._order[self._starts[r] : self._starts[r + 1]]
                out.add(str(self.tokens[picked[np.argmin(self.rank[picked])]]))
        return out

    def summary(self) -> dict:
        used = np.unique(self.buckets)
        return {
            "tokens": len(self),
            "sources": dict(self.sources),
            "n_buckets": self.n_buckets,
            "buckets_with_a_candidate": int(len(used)),
            "candidates_per_used_bucket": round(len(self) / max(1, len(used)), 3),
        }


def public_words(n_words: int) -> dict[str, list[str]]:
    """The attacker's candidate words by source; none is taken from the corpus."""
    import wordfreq  # deferred: loads its frequency tables
    from faker.providers.company.en_US import Provider as Company
    from faker.providers.person.en_US import Provider as Person

    emoji = [k for character in REACTION_EMOJI for k in emoji_keywords(character)]
    return {
        "wordfreq_en": list(wordfreq.top_n_list("en", n_words)),
        "faker_names": [*Person.first_names, *Person.last_names],
        "faker_company_words": [*Company.company_suffixes, *(w for ws in Company.catch_phrase_words for w in ws)],
        "emoji_lexicon": [*emoji, *topic_vocabulary(), *FILLER_WORDS],
    }


@cache
def attacker_dictionary(n_words: int, n_buckets: int) -> Dictionary:
    """``public_words`` tokenised (the task's tokenizer, unigrams) and hashed into ``n_buckets``."""
    if n_words < 1:
        raise ConfigError(f"audit.server_view_dictionary: must be ≥ 1, got {n_words}")
    return dictionary_of(public_words(n_words), n_buckets)


def dictionary_of(words_by_source: dict[str, list[str]], n_buckets: int) -> Dictionary:
    """``words_by_source`` (each list most likely first) as a :class:`Dictionary`: a token's rank is
    its first position in the sources' concatenation."""
    first: dict[str, int] = {}
    sources = {}
    for source, words in words_by_source.items():
        before = len(first)
        for w in words:
            for t in tokenize(w, bigrams=False):
                first.setdefault(t, len(first))
        sources[source] = len(first) - before
    tokens = np.array(sorted(first), dtype=str)
    buckets = np.fromiter((bucket_of(t, n_buckets) for t in tokens), np.int64, len(tokens))
    rank = np.fromiter((first[t] for t in tokens), np.int64, len(tokens))
    return Dictionary(tokens=tokens, buckets=buckets, rank=rank, n_buckets=n_buckets, sources=sources)


# -- what the server saw, per client ---------------------------------------------------------------
def rows_seen_individually(obs: ServerViewObservations) -> dict[int, np.ndarray]:
    """Client → the rows of its updates, united over the rounds the server saw one."""
    return {c: np.unique(np.concatenate([rows for _, rows in seen])) for c, seen in obs.individual.items() if seen}


def rows_by_intersection(obs: ServerViewObservations) -> dict[int, np.ndarray]:
    """Client → the rows common to every aggregate whose cohort included it (the intersection attack)."""
    out: dict[int, np.ndarray] = {}
    for _, clients, rows in obs.aggregates:
        for c in np.unique(clients).tolist():
            out[c] = rows if c not in out else np.intersect1d(out[c], rows, assume_unique=True)
    return out


def training_words(task, data: Prepared, partition: ClientPartition, client: int) -> set[str]:
    """A client's distinct unigram tokens of its training examples, as the model was fed them."""
    rows = partition.rows[partition.offsets[client] : partition.offsets[client + 1]]
    texts = data.corpus.texts[data.train.message_index[rows]]
    return {t for text in texts for t in tokenize(str(text), bigrams=False)[: task.max_tokens]}


# -- statistics -------------------------------------------------------------------------------------
def mean_ci(values, *, resamples: int, confidence: float, seed: int) -> dict:
    """Mean and percentile-bootstrap CI over clients (``scipy.stats.bootstrap``); no CI with < 2 values."""
    from scipy.stats import bootstrap

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": None, "ci": None, "n": 0}
    if len(x) < 2:
        return {"mean": float(x.mean()), "ci": None, "n": 1}
    ci = bootstrap(
        (x,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return {"mean": float(x.mean()), "ci": [float(ci.low), float(ci.high)], "n": int(len(x))}


def detail_recovered(detail: str, recovered: set[str]) -> bool:
    """A detail is recovered when every one of its tokens is (a detail without tokens never is)."""
    tokens = tokenize(detail, bigrams=False)
    return bool(tokens) and all(t in recovered for t in tokens)


def recovery(
    rows_by_client: dict[int, np.ndarray],
    truth_by_client: dict[int, set[str]],
    dictionary: Dictionary,
    *,
    details_by_client: dict[int, dict[str, list[str]]] | None = None,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Recall, precision and dictionary coverage per client (mean, CI), and personal details recovered."""
    clients = sorted(c for c in rows_by_client if c in truth_by_client)
    recall, precision, coverage, n_recovered, best_recall, best_precision = [], [], [], [], [], []
    detail_counts: dict[str, dict[str, int]] = {}
    detail_shares: dict[str, list[float]] = {}
    for c in clients:
        truth = truth_by_client[c]
        recovered = dictionary.candidates(rows_by_client[c])
        hit = len(recovered & truth)
        recall.append(hit / len(truth) if truth else None)
        precision.append(hit / len(recovered) if recovered else None)
        coverage.append(sum(t in dictionary for t in truth) / len(truth) if truth else None)
        n_recovered.append(len(recovered))
        best = dictionary.best_candidates(rows_by_client[c])
        best_recall.append(len(best & truth) / len(truth) if truth else None)
        best_precision.append(len(best & truth) / len(best) if best else None)
        for kind, details in (details_by_client or {}).get(c, {}).items():
            if not details:
                continue
            got = [detail_recovered(d, recovered) for d in details]
            typed = [detail_recovered(d, truth) for d in details]
            counts = detail_counts.setdefault(kind, {"details": 0, "in_training_text": 0, "recovered": 0})
            counts["details"] += len(details)
            counts["in_training_text"] += sum(typed)
            counts["recovered"] += sum(got)
            detail_shares.setdefault(kind, []).append(sum(got) / len(details))
    stats = dict(resamples=resamples, confidence=confidence)
    out = {
        "result": "measured",
        "n_clients": len(clients),
        "recall": mean_ci(recall, seed=seed, **stats),
        "precision": mean_ci(precision, seed=seed + 1, **stats),
        "dictionary_coverage": mean_ci(coverage, seed=seed + 2, **stats),
        "recovered_per_client": float(np.mean(n_recovered)) if n_recovered else None,
        "words_per_client": float(np.mean([len(truth_by_client[c]) for c in clients])) if clients else None,
        "most_likely_candidate": {
            "rule": "per row, only the candidate of lowest rank (wordfreq's frequency order, then names, lexicon)",
            "recall": mean_ci(best_recall, seed=seed + 4, **stats),
            "precision": mean_ci(best_precision, seed=seed + 5, **stats),
        },
    }
    if details_by_client is not None:
        out["personal_details"] = {
            kind: {
                **counts,
                "share_recovered": counts["recovered"] / counts["details"],
                "per_client": mean_ci(detail_shares[kind], seed=seed + 3 + i, **stats),
            }
            for i, (kind, counts) in enumerate(sorted(detail_counts.items()))
        }
    return out


# -- personal details (another module's API; this corpus may have none) ------------------------------
def personal_details_by_client(cfg: RunConfig, data: Prepared, partition: ClientPartition, clients) -> tuple:
    """(client → {"names": [...], "contacts": [...]}, None) or (None, why there are none)."""
    if cfg.data.source != "synthetic":
        return None, f"{NO_DETAILS} (data.source={cfg.data.source})"
    try:  # function-local: the module is optional (a corpus generator without personal details)
        from sandbox.data.personal import personal_details
    except ImportError:
        return None, f"{NO_DETAILS} (sandbox.data.personal.personal_details is not available)"
    details = personal_details(cfg.data.synthetic)
    names, contacts = list(details.names), list(details.contacts)
    if not any(names) and not any(contacts):
        return None, NO_DETAILS
    out = {}
    for c in clients:
        users = partition.users_of([c], data.corpus, data.train)
        out[c] = {
            "names": [d for u in users if u < len(names) for d in names[u]],
            "contacts": [d for u in users if u < len(contacts) for d in contacts[u]],
        }
    return out, None


# -- the audit --------------------------------------------------------------------------------------
def server_view_statistics(cfg: RunConfig, data: Prepared, obs: ServerViewObservations) -> dict:
    """The attack on one run's observations: individual updates and the intersection attack."""
    a = cfg.audit
    dictionary = attacker_dictionary(a.server_view_dictionary, cfg.task.n_buckets)
    partition = partition_clients(data.corpus, data.train, unit=cfg.federation.unit)
    individual, intersected = rows_seen_individually(obs), rows_by_intersection(obs)
    took_part = sorted(set(individual) | set(intersected))
    truth = {c: training_words(cfg.task, data, partition, c) for c in took_part}
    details, no_details = personal_details_by_client(cfg, data, partition, took_part)
    kwargs = dict(details_by_client=details, resamples=a.resamples, confidence=a.confidence, seed=cfg.seed)
    out = {
        "n_clients": len(partition),
        "clients_took_part": len(took_part),
        "clients_seen_individually": {
            "count": len(individual),
            "share": len(individual) / len(took_part) if took_part else None,
        },
        "updates_seen": obs.updates_seen,
        "aggregates_seen": obs.aggregates_seen,
        "unattributed_updates": obs.unattributed,
        "dictionary": dictionary.summary(),
        "individual": recovery(individual, truth, dictionary, **kwargs)
        if individual
        else {"result": "not_applicable", "reason": "the server saw no individual update"},
        "aggregate_intersection": recovery(intersected, truth, dictionary, **kwargs)
        if intersected
        else {"result": "not_applicable", "reason": "the server saw no aggregate (no secure aggregation)"},
    }
    if details is None:
        out["personal_details"] = {"result": "not_applicable", "reason": no_details}
    return out


def run_server_view_audit(cfg: RunConfig, data: Prepared, outcome, *, out_dir, privacy: dict) -> dict:
    """``audit=server_view`` on the run's observations (``Outcome.observations["server_view"]``): the
    record's ``audit`` section (called by ``sandbox.run``)."""
    started, a = time.perf_counter(), cfg.audit
    obs = (outcome.observations or {}).get("server_view")
    if not isinstance(obs, ServerViewObservations):
        raise ConfigError("audit.attack: server_view needs the observations of a federated run (mode=federated)")
    secagg = bool(getattr(cfg.federation, "secagg", False))  # the key of secure aggregation, when present
    stats = server_view_statistics(cfg, data, obs)
    control, models = _control(cfg, data, stats, secagg=secagg)
    result = "inconclusive" if control["ran_on"] != "none" and not control["passed"] else "measured"
    if result == "inconclusive":
        reason = control["reason"] + ": a low recovery here is no evidence of privacy"
    elif control["ran_on"] == "none":
        reason = f"measured; positive control not run: {control['reason']}"
    else:
        reason = f"measured; control: {control['reason']}"
    return {
        "attack": "server_view",
        "level": cfg.federation.unit,
        "threat": THREAT,
        "result": result,
        "reason": reason,
        "finding": finding(cfg, stats),
        "secure_aggregation": secagg,
        "mechanism": cfg.privacy.mechanism,
        "accountant_epsilon": privacy.get("epsilon"),
        "dp_scope": _dp_scope(cfg.privacy.mechanism),
        **stats,
        "control": control,
        "bootstrap": {"resamples": a.resamples, "confidence": a.confidence, "method": "percentile", "over": "clients"},
        "models_trained": models,
        "timing": {"audit_seconds": round(time.perf_counter() - started, 2)},
    }


def _control(cfg: RunConfig, data: Prepared, stats: dict, *, secagg: bool) -> tuple[dict, list]:
    """The attack on individual updates: this run's own, or (secure aggregation) a retrained run's."""
    rule = f"mean recall on individual updates: CI lower end > {CONTROL_RECALL_FLOOR:g}"
    if not secagg:
        return _control_verdict(stats["individual"], ran_on="this run (individual updates seen)", rule=rule), []
    a = cfg.audit
    if not (a.control and a.server_view_retrain_control):
        why = (
            "positive control disabled (audit.control=false)"
            if not a.control
            else (
                "a run under secure aggregation gives the server no individual update; the control (the same config "
                "without secure aggregation) costs one more training run: set audit.server_view_retrain_control=true"
            )
        )
        return {"ran_on": "none", "passed": False, "rule": rule, "reason": why}, []
    control_cfg = dataclasses.replace(cfg, progress=False, federation=dataclasses.replace(cfg.federation, secagg=False))
    outcome = train_model(control_cfg, data, Seeds.from_seed(cfg.seed))
    control_stats = server_view_statistics(control_cfg, data, outcome.observations["server_view"])
    control = _control_verdict(control_stats["individual"], ran_on="control run (no secure aggregation)", rule=rule)
    control["audit"] = {"attack": "server_view", "result": "measured", "secure_aggregation": False, **control_stats}
    return control, [model_entry("positive control (no secure aggregation)", outcome.privacy)]


def _control_verdict(individual: dict, *, ran_on: str, rule: str) -> dict:
    ci = (individual.get("recall") or {}).get("ci")
    if individual.get("result") != "measured" or ci is None:
        return {
            "ran_on": ran_on,
            "passed": False,
            "rule": rule,
            "reason": f"the control measured no recall ({individual.get('reason', 'fewer than 2 clients seen')})",
        }
    passed = bool(ci[0] > CONTROL_RECALL_FLOOR)
    verb = "recovers" if passed else "recovers too little:"
    return {
        "ran_on": ran_on,
        "passed": passed,
        "rule": rule,
        "statistics": {"recall": individual["recall"], "precision": individual["precision"]},
        "reason": f"the attack on individual updates {verb} mean recall {individual['recall']['mean']:.3f} "
        f"(CI [{ci[0]:.3f}, {ci[1]:.3f}])",
    }


def _dp_scope(mechanism: str) -> str:
    if mechanism == "dpfedavg":
        return (
            "DP-FedAvg (central) noises the sum of the clipped updates after the server has received each one: "
            "its ε bounds what the released model reveals, not what the server sees"
        )
    if mechanism == "dpftrl":
        return (
            "DP-FTRL (central) noises the tree's prefix sums of the clipped updates after the server has received "
            "each one: its ε bounds what the released models reveal, not what the server sees"
        )
    if mechanism == "client_dpsgd":
        return "client-level DP-SGD noises each update on the client, before the server receives it"
    return "not private: no DP mechanism"


def finding(cfg: RunConfig, stats: dict) -> str:
    """The finding in plain language, from the measured figures."""
    ind, agg = stats["individual"], stats["aggregate_intersection"]

    def words(section: dict) -> str:
        r, p = section["recall"], section["precision"]
        ci = f" (95% CI {r['ci'][0]:.0%}–{r['ci'][1]:.0%})" if r["ci"] else ""
        text = (
            f"{r['mean']:.0%} of a client's distinct words{ci}, precision {p['mean']:.0%}"
            if r["mean"] is not None
            else "no words"
        )
        for kind, d in sorted((section.get("personal_details") or {}).items()):
            text += f"; {d['share_recovered']:.0%} of their {kind.replace('_', ' ')}"
        return text

    if ind.get("result") == "measured":
        lead = {
            "dpfedavg": "DP-FedAvg adds noise after the server has seen each clipped update",
            "dpftrl": "DP-FTRL adds tree noise after the server has seen each clipped update",
            "client_dpsgd": "Client-level DP-SGD noises each update before it leaves the client",
        }.get(cfg.privacy.mechanism, "Without DP or secure aggregation the server sees each client's update")
        return (
            f"{lead}: from the non-zero embedding rows of the updates it received, a curious server recovers "
            f"{words(ind)} (over {ind['n_clients']} clients, with a public dictionary)"
        )
    if agg.get("result") == "measured":
        return (
            f"Under secure aggregation the server saw no individual update; intersecting the {stats['aggregates_seen']} "
            f"aggregates over the rounds each client took part in recovers {words(agg)} "
            f"(over {agg['n_clients']} clients)"
        )
    return "The server received no update and no aggregate: nothing to recover"
