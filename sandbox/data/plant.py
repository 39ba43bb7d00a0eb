"""Canaries in a team's own corpus: ``python -m sandbox.data plant DATA_DIR OUT_DIR ...``.

``plant_canaries`` draws a canary manifest exactly as the synthetic corpus does
(``sandbox.data.canaries.draw_canary_manifest``: secrets of the stated random space, "my
verification code is 4 8 1 9 2 7", 10⁶ values; each canary written ``repeats`` times into the
messages of its own ``users_per_canary`` consenting users; as many fresh secrets of the same space
never written anywhere, the audits' reference set) and returns a *copy* of the corpus with the
canary messages added. Nothing in the copy marks a canary:

* each copy of a canary goes right after a randomly chosen message of its host, with that
  message's channel and timestamp (the host's own rhythm, not a new channel or a new time);
* its message id is a fresh random id, as unrelated to the canary as any other;
* its reaction (the label a canary is scored with, under ``task=emoji``) is drawn uniformly from the
  corpus's own primary reactions, as the synthetic corpus draws it from its catalogue (the canary
  audit scores the fresh secrets with labels drawn uniformly too: the same law).

The manifest is written apart from the corpus (``--manifest``, default ``OUT_DIR.canaries.json``
beside the directory): training never reads it; ``data.manifest=PATH`` hands it to the audits.
Opted-out users (themselves or by their workspace) never host a canary. A secret whose text the
corpus already holds (the synthetic corpus has canaries of the same shape) is never drawn: a
"fresh" secret must be one no one wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sandbox.data.canaries import CanaryManifest, draw_canary_manifest
from sandbox.data.schema import Corpus, CorpusError
from sandbox.io import write_json


def plant_canaries(
    corpus: Corpus,
    *,
    n_canaries: int,
    repeats: int,
    users_per_canary: int,
    n_fresh: int,
    seed: int,
    secret_format: str = "spaced",
) -> tuple[Corpus, CanaryManifest]:
    """(a copy of ``corpus`` with the canaries written into their hosts' messages, the manifest)."""
    for name, value, low in (
        ("--canaries", n_canaries, 1),
        ("--repeats", repeats, 1),
        ("--users", users_per_canary, 1),
        ("--fresh", n_fresh, 1),
    ):
        if value < low:
            raise ValueError(f"{name}: must be ≥ {low}, got {value}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A17]))
    consenting = corpus.user_consented()
    has_messages = np.bincount(corpus.message_user, minlength=corpus.n_users) > 0
    hosts_allowed = np.flatnonzero(consenting & has_messages)
    primary = {r[0] for r, ok in zip(corpus.reactions, consenting[corpus.message_user]) if ok and r}
    if not primary:
        raise CorpusError("the corpus has no reaction on any consenting user's message: no label to give a canary")
    labels = sorted(primary)
    existing = set(map(str, corpus.texts))
    for _ in range(100):  # a secret already written in the corpus (e.g. a message of this very shape) is redrawn
        try:
            manifest = draw_canary_manifest(
                consenting_user_ids=[str(corpus.user_ids[i]) for i in hosts_allowed],
                n_canaries=n_canaries,
                users_per_canary=users_per_canary,
                repeats=repeats,
                n_fresh=n_fresh,
                reactions=labels,
                rng=rng,
                secret_format=secret_format,
            )
        except ValueError as exc:  # too few consenting users
            raise ValueError(f"--canaries × --users: {exc}") from None
        if not existing & {*manifest.fresh, *(c.text for c in manifest.inserted)}:
            return _with_canaries(corpus, manifest, rng), manifest
    raise CorpusError("the corpus already holds too many texts of the canary space to draw unseen secrets")


def _with_canaries(corpus: Corpus, manifest: CanaryManifest, rng: np.random.Generator) -> Corpus:
    index_of_user = {str(u): i for i, u in enumerate(corpus.user_ids)}
    by_user = [[] for _ in range(corpus.n_users)]
    for m, u in enumerate(corpus.message_user):
        by_user[u].append(m)
    after: dict[int, list[tuple[str, str]]] = {}  # message index → canary (text, reaction) copies after it
    for canary in manifest.planted:
        for user_id in canary.user_ids:
            own = by_user[index_of_user[user_id]]
            for m in rng.choice(own, size=canary.repeats, replace=True):
                after.setdefault(int(m), []).append((canary.text, canary.reaction))
    existing = set(map(str, corpus.message_ids))
    rows: list[int] = []  # original message index, or −(1 + j) for the j-th canary copy
    copies: list[tuple[int, str, str]] = []  # (host message, text, reaction)
    for m in range(corpus.n_messages):
        rows.append(m)
        for text, reaction in after.get(m, ()):
            rows.append(-(1 + len(copies)))
            copies.append((m, text, reaction))
    ids = []
    while len(ids) < len(copies):
        candidate = f"m-{rng.integers(0, 2**63):016x}"
        if candidate not in existing:
            existing.add(candidate)
            ids.append(candidate)

    def column(values, pick):
        return [values[r] if r >= 0 else pick(copies[-1 - r], -1 - r) for r in rows]

    return Corpus(
        workspace_ids=corpus.workspace_ids,
        workspace_opted_out=corpus.workspace_opted_out,
        user_ids=corpus.user_ids,
        user_workspace=corpus.user_workspace,
        user_opted_out=corpus.user_opted_out,
        message_ids=column(corpus.message_ids, lambda c, j: ids[j]),
        message_user=column(corpus.message_user, lambda c, j: corpus.message_user[c[0]]),
        channels=column(corpus.channels, lambda c, j: corpus.channels[c[0]]),
        timestamps=column(corpus.timestamps, lambda c, j: corpus.timestamps[c[0]]),
        texts=column(corpus.texts, lambda c, j: c[1]),
        reactions=tuple(column(corpus.reactions, lambda c, j: (c[2],))),
    )


def write_manifest(manifest: CanaryManifest, path: Path) -> Path:
    """The manifest as JSON at ``path`` (refusing to overwrite: it is the audits' ground truth)."""
    if path.exists():
        raise CorpusError(f"{path}: exists; the manifest is the audits' ground truth and is never overwritten")
    write_json(path, manifest.to_json())
    return path


def read_manifest(path: str | Path, corpus: Corpus) -> CanaryManifest:
    """The manifest at ``path``, checked against ``corpus``: every host is a consenting user of it."""
    path = Path(path)
    try:
        manifest = CanaryManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read the canary manifest: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSON or UTF-8
        raise CorpusError(f"{path}: not a canary manifest: {exc}") from None
    except CorpusError as exc:
        raise CorpusError(f"{path}: {exc}") from None
    consenting = {str(u) for u, ok in zip(corpus.user_ids, corpus.user_consented()) if ok}
    known = {str(u) for u in corpus.user_ids}
    for canary in manifest.inserted:
        for user in canary.user_ids:
            if user not in known:
                raise CorpusError(f"{path}: {canary.canary_id}: host {user!r} is not a user of the corpus")
            if user not in consenting:
                raise CorpusError(f"{path}: {canary.canary_id}: host {user!r} has opted out (or their workspace)")
    texts = set(map(str, corpus.texts))
    for canary in manifest.planted:
        if canary.text not in texts:
            raise CorpusError(f"{path}: {canary.canary_id}: its text is in no message of the corpus (another corpus?)")
    return manifest
