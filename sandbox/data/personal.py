"""Personal content of the synthetic corpus: the people, customers and projects each user writes about,
their own e-mail and phone number, and an everyday Zipfian vocabulary.

Real users write names of colleagues and customers, project code names and their own contact
details; the rest of the synthetic corpus shares every word between users (one lexicon), so a
curious server that maps an update's non-zero embedding rows back to words would learn nothing
personal. With ``personal_rate > 0`` each user gets:

- ``contacts_per_user`` people they talk to, written as a first name ("Maria") or, for
  ``FULL_NAME_SHARE`` of them, a full name ("Maria Lopez"); ``customers_per_user`` customers
  (Faker company names, "Collins, Burton and Short"); ``projects_per_user`` project code names
  (a colour and a noun, "Teal Harbor"). A share ``personal_workspace_share`` of each comes from
  a pool of the user's workspace (colleagues, customers and projects a workspace shares), the rest
  from the whole pool;
- a Zipf (exponent ``personal_zipf_exponent``) over their own list, in an order random per user,
  so users mention their own details with their own frequencies;
- a share ``personal_rate`` of their messages mention one detail (a name stays one phrase when a
  message's words are shuffled).

With ``contact_detail_rate > 0`` a share of each user's messages carries their own e-mail
(first.last@their workspace's domain) or phone number ("reach me at ...", "call me on ...").
With ``everyday_rate > 0`` that share of the filler words is drawn from English word frequencies
(``wordfreq``, the top ``everyday_words`` words that are no word of the emoji lexicon) instead
of the short fixed filler list.

Names, companies, nouns and domains come from one seeded ``faker.Faker("en_US")`` pool per
seed (drawn once, cached); the per-user draws are numpy, from the corpus' "personal" stream.
Faker's and wordfreq's word lists are data of their versions: a personal corpus is determined
by the seed *and* those versions (pyproject.toml bounds them). With every rate at 0 nothing here
runs and the corpus is the one without personal content, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from sandbox.data.lexicon import FILLER_WORDS, REACTION_EMOJI, emoji_keywords, topic_vocabulary
from sandbox.data.normalize import ASCII_TOKEN
from sandbox.data.population import Population, draw_population
from sandbox.data.text import sample_rows

if TYPE_CHECKING:
    from sandbox.config.schema import SyntheticConfig

FULL_NAME_SHARE = 0.4  # of a user's contacts, written with first and last name (else first name only)
WORKSPACE_POOL_MIN = 10  # a workspace's pool per kind holds max(this, 2 × per-user count) entries
EMAIL_TEMPLATES = ("reach me at {}", "email me at {}", "my email is {}")
PHONE_TEMPLATES = ("call me on {}", "my number is {}", "text me at {}")
# the tokenizer's ASCII alphabet: the generated words are kept whole by it (and the corpus stays ASCII)
_TOKEN = ASCII_TOKEN
_POOL_SIZES = {"first_names": 1500, "last_names": 1500, "companies": 1000, "nouns": 1500, "domains": 400}
_N_PERSONS = 2000  # (first, last) pairs of the name pool
_N_PROJECTS = 1500  # (colour, noun) pairs of the project pool


@dataclass(frozen=True)
class PersonalDetails:
    """Ground truth of each user's personal content, indexed like ``Corpus.user_ids`` (user-00000 = 0).

    ``names[u]``: the contacts, customers and projects user u may mention, as written in text
    (deduplicated, in that order); ``name_weights[u]``: the probability of each when u mentions
    one (their Zipf); ``contacts[u]``: u's own (e-mail, phone number) as written. Empty tuples for
    everyone when the feature is off (``personal_rate = 0``, resp. ``contact_detail_rate = 0``).
    Strings only: the audit tokenizes them with the task's tokenizer (``data`` may not import
    ``tasks``).
    """

    names: list[tuple[str, ...]]
    name_weights: list[tuple[float, ...]]
    contacts: list[tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class PersonalVocabulary:
    """One draw of every user's personal vocabulary (``draw_vocabulary``)."""

    phrases: tuple[str, ...]  # every name as it can be written: first names, full names, companies, projects
    user_names: np.ndarray  # int64 [U, L]: phrase ids (contacts, then customers, then projects)
    user_weights: np.ndarray  # float [U, L]: rows sum to 1 (the user's Zipf over their own list)
    emails: tuple[str, ...]  # [U]
    phones: tuple[str, ...]  # [U]

    def details(self, config: SyntheticConfig) -> PersonalDetails:
        names, weights = [], []
        for ids, w in zip(self.user_names.tolist(), self.user_weights.tolist()):
            merged: dict[str, float] = {}
            for i, p in zip(ids, w):
                merged[self.phrases[i]] = merged.get(self.phrases[i], 0.0) + p
            names.append(tuple(merged) if config.personal_rate > 0 else ())
            weights.append(tuple(merged.values()) if config.personal_rate > 0 else ())
        on = config.contact_detail_rate > 0
        contacts = [(e, p) if on else () for e, p in zip(self.emails, self.phones)]
        return PersonalDetails(names=names, name_weights=weights, contacts=contacts)


def uses_personal_stream(config: SyntheticConfig) -> bool:
    return config.personal_rate > 0 or config.contact_detail_rate > 0 or config.everyday_rate > 0


def _has_vocabulary(config: SyntheticConfig) -> bool:
    return config.personal_rate > 0 or config.contact_detail_rate > 0


@cache
def faker_pools(seed: int) -> dict[str, tuple[str, ...]]:
    """Names, companies, nouns, colours and domains from one seeded en_US Faker (drawn once per seed).

    First and last names keep Faker's repeats (its popularity weights: common names are common);
    the other pools are deduplicated. Entries with a keyword of a reaction emoji are left out (they
    would be emoji evidence, e.g. the colour "red").
    """
    import faker  # noqa: PLC0415  (about 0.25 s; only personal corpora need it)

    fake = faker.Faker("en_US")
    fake.seed_instance(seed)
    reserved = _reserved_words()
    n = _POOL_SIZES
    draws = {
        "first_names": [fake.first_name() for _ in range(n["first_names"])],
        "last_names": [fake.last_name() for _ in range(n["last_names"])],
        "companies": [fake.company() for _ in range(n["companies"])],
        "nouns": [fake.word(part_of_speech="noun") for _ in range(n["nouns"])],
        "colours": [fake.safe_color_name() for _ in range(200)],
        "domains": [fake.domain_name() for _ in range(n["domains"])],
    }
    pools = {}
    for kind, words in draws.items():
        kept = [w for w in words if not reserved & set(_TOKEN.findall(w.lower()))]
        pools[kind] = tuple(kept) if kind in ("first_names", "last_names") else tuple(dict.fromkeys(kept))
    return pools


@cache
def everyday_vocabulary(n_words: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The top ``n_words`` English words (wordfreq) that the tokenizer keeps whole and the emoji lexicon
    does not use, and their probabilities (∝ ``wordfreq.word_frequency``): a Zipfian filler."""
    import wordfreq  # noqa: PLC0415  (about 0.2 s to import; only these corpora need it)

    lexicon = _reserved_words() | set(topic_vocabulary()) | set(FILLER_WORDS)
    words = tuple(
        w for w in wordfreq.top_n_list("en", n_words) if _TOKEN.fullmatch(w) and w not in lexicon and w == w.lower()
    )
    frequency = np.array([wordfreq.word_frequency(w, "en") for w in words], dtype=float)
    return words, frequency / frequency.sum()


@cache
def _reserved_words() -> frozenset[str]:
    return frozenset(k for character in REACTION_EMOJI for k in emoji_keywords(character))


def draw_vocabulary(config: SyntheticConfig, population: Population, rng: np.random.Generator) -> PersonalVocabulary:
    """Every user's contacts, customers, projects, Zipf weights, e-mail and phone (the stream's first draws)."""
    pools = faker_pools(config.seed)
    n_users, n_workspaces = population.n_users, population.n_workspaces
    firsts = np.array(pools["first_names"], dtype=object)
    lasts = np.array(pools["last_names"], dtype=object)
    person_first = firsts[rng.integers(len(firsts), size=_N_PERSONS)]
    person_last = lasts[rng.integers(len(lasts), size=_N_PERSONS)]
    colours = np.array([c.title() for c in pools["colours"]], dtype=object)
    nouns = np.array([w.title() for w in pools["nouns"]], dtype=object)
    n_projects = _N_PROJECTS
    projects = (
        colours[rng.integers(len(colours), size=n_projects)] + " " + nouns[rng.integers(len(nouns), size=n_projects)]
    )
    phrases = list(person_first) + list(person_first + " " + person_last) + list(pools["companies"]) + list(projects)
    offsets = np.cumsum([0, _N_PERSONS, _N_PERSONS, len(pools["companies"])])
    ws = population.user_workspace

    people = _pick(rng, _N_PERSONS, config.contacts_per_user, ws, n_workspaces, config.personal_workspace_share)
    full = rng.random(people.shape) < FULL_NAME_SHARE
    contacts = np.where(full, offsets[1] + people, people)
    customers = offsets[2] + _pick(
        rng, len(pools["companies"]), config.customers_per_user, ws, n_workspaces, config.personal_workspace_share
    )
    own_projects = offsets[3] + _pick(
        rng, n_projects, config.projects_per_user, ws, n_workspaces, config.personal_workspace_share
    )
    user_names = np.concatenate([contacts, customers, own_projects], axis=1).astype(np.int64)
    length = user_names.shape[1]
    rank = np.argsort(rng.random((n_users, length)), axis=1)  # a random order per user
    weights = (1.0 + rank) ** -config.personal_zipf_exponent
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)

    own = rng.integers(_N_PERSONS, size=n_users)
    domains = np.array(pools["domains"], dtype=object)[rng.integers(len(pools["domains"]), size=n_workspaces)]
    local = [f"{_ascii(f)}.{_ascii(last)}" for f, last in zip(person_first[own], person_last[own])]
    emails = tuple(f"{name}@{domain}" for name, domain in zip(local, domains[ws]))
    area, exchange = rng.integers(200, 1000, size=(2, n_users))  # NANP: neither starts with 0 or 1
    line = rng.integers(0, 10_000, size=n_users)
    phones = tuple(f"{a}-{e}-{x:04d}" for a, e, x in zip(area.tolist(), exchange.tolist(), line.tolist()))
    return PersonalVocabulary(
        phrases=tuple(phrases), user_names=user_names, user_weights=weights, emails=emails, phones=phones
    )


def _ascii(name: str) -> str:
    return "".join(c for c in name.lower() if "a" <= c <= "z")


def _pick(
    rng: np.random.Generator, n_pool: int, k: int, user_workspace: np.ndarray, n_workspaces: int, share: float
) -> np.ndarray:
    """[U, k] pool indices: from the user's workspace pool (distinct) with probability share, else anywhere."""
    n_users = len(user_workspace)
    size = min(n_pool, max(WORKSPACE_POOL_MIN, 2 * k))
    workspace_pool = np.argsort(rng.random((n_workspaces, n_pool)), axis=1)[:, :size]
    mine = np.argsort(rng.random((n_users, size)), axis=1)[:, :k]
    from_workspace = workspace_pool[user_workspace[:, None], mine]
    anywhere = rng.integers(n_pool, size=(n_users, k))
    return np.where(rng.random((n_users, k)) < share, from_workspace, anywhere)


def personal_details(config: SyntheticConfig) -> PersonalDetails:
    """Each user's personal details as ``generate_corpus(config)`` wrote them (the audit's ground truth).

    Regenerates the same draw: the population from its stream, then the first draws of the
    "personal" stream. Training never reads this.
    """
    from sandbox.data.synthetic import child_stream  # noqa: PLC0415  (synthetic imports this module)

    if not _has_vocabulary(config):
        empty = [()] * config.n_users
        return PersonalDetails(names=list(empty), name_weights=list(empty), contacts=list(empty))
    population = draw_population(config, child_stream(config, "population"))
    return draw_vocabulary(config, population, child_stream(config, "personal")).details(config)


Extend = Callable[[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray], tuple[tuple[str, ...], np.ndarray, np.ndarray]]


def personal_extension(config: SyntheticConfig, population: Population, rng: np.random.Generator) -> Extend:
    """The step ``draft_messages`` runs before joining texts: everyday words, mentions, contact details.

    The vocabulary is drawn now (the first draws of ``rng``, as ``personal_details`` redraws
    them); the returned function takes (words, tokens, owner message of each token, user of each
    message) and returns them extended.
    """
    vocabulary = draw_vocabulary(config, population, rng) if _has_vocabulary(config) else None

    def extend(
        words: tuple[str, ...], tokens: np.ndarray, owner: np.ndarray, user: np.ndarray
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        new_words = list(words)
        if config.everyday_rate > 0:
            everyday, probs = everyday_vocabulary(config.everyday_words)
            filler = np.flatnonzero(tokens < len(FILLER_WORDS))  # filler ids come first in the vocabulary
            swap = filler[rng.random(len(filler)) < config.everyday_rate]
            picks = np.minimum(np.searchsorted(np.cumsum(probs), rng.random(len(swap)), side="right"), len(probs) - 1)
            tokens = tokens.copy()
            tokens[swap] = len(new_words) + picks
            new_words += everyday
        extra_tokens, extra_owner = [tokens], [owner]
        if vocabulary is not None and config.personal_rate > 0:
            mentions = np.flatnonzero(rng.random(len(user)) < config.personal_rate)
            slot = sample_rows(vocabulary.user_weights, user[mentions], rng)
            extra_tokens.append(len(new_words) + vocabulary.user_names[user[mentions], slot])
            extra_owner.append(mentions)
            new_words += vocabulary.phrases
        if vocabulary is not None and config.contact_detail_rate > 0:
            carriers = np.flatnonzero(rng.random(len(user)) < config.contact_detail_rate)
            phone = rng.random(len(carriers)) < 0.5
            pick = rng.random(len(carriers))
            texts = [
                PHONE_TEMPLATES[int(t * len(PHONE_TEMPLATES))].format(vocabulary.phones[u])
                if p
                else EMAIL_TEMPLATES[int(t * len(EMAIL_TEMPLATES))].format(vocabulary.emails[u])
                for u, p, t in zip(user[carriers].tolist(), phone.tolist(), pick.tolist())
            ]
            extra_tokens.append(len(new_words) + np.arange(len(carriers)))
            extra_owner.append(carriers)
            new_words += texts
        return tuple(new_words), np.concatenate(extra_tokens).astype(np.int64), np.concatenate(extra_owner)

    return extend
