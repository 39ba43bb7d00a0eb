"""Hash collisions of personal words: how often a personal token shares its embedding row with another token.

The emoji task hashes unigrams and bigrams into ``task.n_buckets`` rows (``sandbox.tasks.text``);
a curious server that maps a client's non-zero embedding rows back to words is confused where a
personal word's bucket also holds other tokens. Measured on a corpus with personal content
(``data=personal``), for each n_buckets:

- ``corpus``: share of distinct personal unigrams (tokens of every user's names and contact
  details, ``tokenize(..., bigrams=False)``) whose bucket holds at least one other distinct token
  (unigram or bigram, as featurised: the first ``max_tokens`` of each message) of the corpus;
- ``corpus_unigrams``: the same against other unigrams only (bigrams are not in a word dictionary);
- ``own_messages``: over (user, personal unigram the user wrote), share whose bucket holds another
  token of that user's own messages: ambiguity inside one client's update.

Each is reported for all personal unigrams and for the *private* ones (no word of the generator's
public lexicon: emoji words, filler, everyday English, contact templates), which are what an audit
tries to recover. ``python -m benchmarks.collisions [n_users]`` prints the table.
"""

from __future__ import annotations

import sys
import time
import zlib

import numpy as np

from sandbox.config.schema import EmojiTaskConfig, SyntheticConfig
from sandbox.data import generate_corpus
from sandbox.data.lexicon import FILLER_WORDS, REACTION_EMOJI, emoji_keywords, topic_vocabulary
from sandbox.data.personal import EMAIL_TEMPLATES, PHONE_TEMPLATES, everyday_vocabulary, personal_details
from sandbox.tasks.text import bucket_of, tokenize

N_BUCKETS = (16_384, 32_768, 65_536, 131_072)
PERSONAL = {"personal_rate": 0.3, "contact_detail_rate": 0.03, "everyday_rate": 0.5}  # = conf/data/personal.yaml


def public_words(config: SyntheticConfig) -> frozenset[str]:
    """Tokens anyone can list from the generator's public word sources (no user's details)."""
    words = set(FILLER_WORDS) | set(topic_vocabulary()) | set(everyday_vocabulary(config.everyday_words)[0])
    words |= {k for c in REACTION_EMOJI for k in emoji_keywords(c)}
    words |= {t for template in EMAIL_TEMPLATES + PHONE_TEMPLATES for t in tokenize(template, bigrams=False)}
    words |= set("0123456789") | {"my", "verification", "code", "is"}
    return frozenset(words)


def collision_rates(
    texts, message_user: np.ndarray, details, n_buckets: tuple[int, ...], *, max_tokens: int, public: frozenset[str]
) -> dict[int, dict[str, float]]:
    """Collision shares per n_buckets (see the module docstring); ``details`` is ``personal_details(config)``."""
    per_user_tokens: dict[int, set[str]] = {}
    corpus_tokens: set[str] = set()
    unigrams: set[str] = set()
    for text, user in zip(texts, message_user.tolist()):
        tokens = tokenize(text, bigrams=True)[:max_tokens]
        per_user_tokens.setdefault(user, set()).update(tokens)
        corpus_tokens.update(tokens)
        unigrams.update(t for t in tokens if " " not in t)
    personal = {t for user in details.names + details.contacts for d in user for t in tokenize(d, bigrams=False)}
    corpus_tokens |= personal
    unigrams |= personal
    index = {t: i for i, t in enumerate(sorted(corpus_tokens))}
    crc = np.array([zlib.crc32(t.encode("utf-8")) for t in sorted(corpus_tokens)], dtype=np.int64)
    is_unigram = np.array([" " not in t for t in sorted(corpus_tokens)])
    groups = {
        "all": np.array(sorted(index[t] for t in personal)),
        "private": np.array(sorted(index[t] for t in personal - public)),
    }
    own_pairs = {"all": [], "private": []}  # (user's token ids, its personal ids)
    for user, tokens in per_user_tokens.items():
        mine = {t for d in details.names[user] + details.contacts[user] for t in tokenize(d, bigrams=False)}
        ids = np.array([index[t] for t in tokens])
        for group, wanted in (("all", mine), ("private", mine - public)):
            written = np.array([index[t] for t in tokens if t in wanted], dtype=np.int64)
            if len(written):
                own_pairs[group].append((ids, written))
    out = {}
    for n in n_buckets:
        bucket = crc % (n - 1) + 1  # = bucket_of
        per_bucket = np.bincount(bucket, minlength=n)
        per_bucket_unigrams = np.bincount(bucket[is_unigram], minlength=n)
        row = {"distinct_tokens": float(len(corpus_tokens)), "distinct_unigrams": float(len(unigrams))}
        # uniform hashing: another of D - 1 tokens lands in a given bucket with probability 1 - e^-(D-1)/(n-1)
        row["expected_corpus"] = 1 - np.exp(-(len(corpus_tokens) - 1) / (n - 1))
        row["expected_corpus_unigrams"] = 1 - np.exp(-(len(unigrams) - 1) / (n - 1))
        for group, ids in groups.items():
            row[f"{group}_n"] = float(len(ids))
            row[f"{group}_corpus"] = float(np.mean(per_bucket[bucket[ids]] > 1))
            row[f"{group}_corpus_unigrams"] = float(np.mean(per_bucket_unigrams[bucket[ids]] > 1))
            shared = total = 0
            for user_ids, written in own_pairs[group]:
                counts = np.bincount(bucket[user_ids], minlength=n)
                shared += int((counts[bucket[written]] > 1).sum())
                total += len(written)
            row[f"{group}_own_messages"] = shared / max(total, 1)
        out[n] = row
    assert bucket_of("maria", n_buckets[0]) == zlib.crc32(b"maria") % (n_buckets[0] - 1) + 1
    return out


def main(argv: list[str]) -> None:
    config = SyntheticConfig(**PERSONAL, **({"n_users": int(argv[0])} if argv else {}))
    task = EmojiTaskConfig()
    start = time.perf_counter()
    corpus, _ = generate_corpus(config)
    details = personal_details(config)
    rates = collision_rates(
        corpus.texts.tolist(),
        corpus.message_user,
        details,
        N_BUCKETS,
        max_tokens=task.max_tokens,
        public=public_words(config),
    )
    first = rates[N_BUCKETS[0]]
    print(
        f"data=personal, {config.n_users} users, {corpus.n_messages} messages, {int(first['distinct_tokens'])} distinct "
        f"tokens (unigrams + bigrams, first {task.max_tokens} per message; {int(first['distinct_unigrams'])} unigrams); "
        "personal unigrams: "
        f"{int(first['all_n'])} ({int(first['private_n'])} private)  [{time.perf_counter() - start:.0f} s]"
    )
    print("shares: all personal unigrams (private ones); [uniform-hashing expectation]")
    print("| n_buckets | dense update (×dim 32, float32) | corpus | corpus, unigrams only | own messages |")
    print("|---:|---:|---:|---:|---:|")
    for n, row in rates.items():
        cells = [
            f"{row[f'all_{k}']:.1%} ({row[f'private_{k}']:.1%})" for k in ("corpus", "corpus_unigrams", "own_messages")
        ]
        cells[0] += f" [{row['expected_corpus']:.1%}]"
        cells[1] += f" [{row['expected_corpus_unigrams']:.1%}]"
        print(f"| {n:,} | {n * task.embedding_dim * 4 / 2**20:.0f} MiB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
