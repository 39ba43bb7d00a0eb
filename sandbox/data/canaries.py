"""Canaries: unique secret-shaped messages planted in training users, for memorisation audits.

Each secret is drawn from a known space (6 random digits, 10^6 values) and rendered into a
fixed template, e.g. "my verification code is 4 8 1 9 2 7". Inserted canaries go to k
consenting users, r times each; fresh canaries come from the same space and are never
inserted, so they are the reference set for exposure and membership audits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sandbox.data.schema import CorpusError

CANARY_TEMPLATE = "my verification code is {secret}"
SECRET_DIGITS = 6
SECRET_SPACE_SIZE = 10**SECRET_DIGITS
SECRET_FORMATS = ("spaced", "compact")
SECRET_SPACE = f"{SECRET_DIGITS} digits 0-9, space-separated (10^{SECRET_DIGITS})"


def secret_space(secret_format: str = "spaced") -> str:
    """The manifest's description of the space secrets are drawn from."""
    layout = "space-separated" if secret_format == "spaced" else "as one word"
    return f"{SECRET_DIGITS} digits 0-9, {layout} (10^{SECRET_DIGITS})"


def format_secret(value: int, secret_format: str = "spaced") -> str:
    """Render a secret in [0, 10^6): spaced '0 0 4 8 1 9' (six one-digit words) or compact '004819' (one word).

    A bag-of-words model sees a spaced secret as digits and digit pairs shared by every
    canary; a compact secret is one word of its own, which such a model can memorise.
    """
    if not 0 <= value < SECRET_SPACE_SIZE:
        raise ValueError(f"secret {value} outside [0, {SECRET_SPACE_SIZE})")
    if secret_format not in SECRET_FORMATS:
        raise ValueError(f"secret format must be one of {SECRET_FORMATS}, got {secret_format!r}")
    digits = f"{value:0{SECRET_DIGITS}d}"
    return " ".join(digits) if secret_format == "spaced" else digits


def secret_pattern(template: str = CANARY_TEMPLATE, secret_format: str = "spaced") -> re.Pattern[str]:
    """Regex matching exactly the texts of the secret space (secret digits in group 1)."""
    digits = r"\d(?: \d){%d}" % (SECRET_DIGITS - 1) if secret_format == "spaced" else r"\d{%d}" % SECRET_DIGITS
    before, after = template.split("{secret}")
    return re.compile(f"^{re.escape(before)}({digits}){re.escape(after)}$")


@dataclass(frozen=True)
class Canary:
    """One inserted canary: `text` appears `repeats` times in each of `user_ids`' messages."""

    canary_id: str
    text: str
    user_ids: tuple[str, ...]
    repeats: int
    reaction: str
    planted: bool = True  # False: a candidate whose coin said "leave out" (canary_inclusion=bernoulli)


@dataclass(frozen=True)
class CanaryManifest:
    """Candidates with hosts (`inserted`; each `planted` or, under Bernoulli inclusion, left out by a fair
    coin) and same-space texts that were never candidates (`fresh`)."""

    template: str
    secret_space: str
    inserted: tuple[Canary, ...]
    fresh: tuple[str, ...]

    @property
    def planted(self) -> tuple[Canary, ...]:
        """The canaries actually written into their hosts' messages."""
        return tuple(c for c in self.inserted if c.planted)

    def to_json(self) -> dict:
        return {
            "template": self.template,
            "secret_space": self.secret_space,
            "inserted": [
                {
                    "canary_id": c.canary_id,
                    "text": c.text,
                    "user_ids": list(c.user_ids),
                    "repeats": c.repeats,
                    "reaction": c.reaction,
                    "planted": c.planted,
                }
                for c in self.inserted
            ],
            "fresh": list(self.fresh),
        }

    @classmethod
    def from_json(cls, d: dict) -> CanaryManifest:
        try:
            inserted = tuple(
                Canary(
                    canary_id=str(c["canary_id"]),
                    text=str(c["text"]),
                    user_ids=tuple(str(u) for u in c["user_ids"]),
                    repeats=int(c["repeats"]),
                    reaction=str(c["reaction"]),
                    planted=bool(c.get("planted", True)),
                )
                for c in d["inserted"]
            )
            return cls(
                template=str(d["template"]),
                secret_space=str(d["secret_space"]),
                inserted=inserted,
                fresh=tuple(str(t) for t in d["fresh"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CorpusError(f"canary manifest: malformed ({type(error).__name__}: {error})") from None


def draw_canary_manifest(
    *,
    consenting_user_ids: Sequence[str],
    n_canaries: int,
    users_per_canary: int,
    repeats: int,
    n_fresh: int,
    reactions: Sequence[str],
    rng: np.random.Generator,
    secret_format: str = "spaced",
    inclusion: str = "fixed",
) -> CanaryManifest:
    """Draw distinct secrets, assign each inserted canary to its own k users (no user hosts two).

    Users are drawn without replacement from `consenting_user_ids`; each canary's reaction is
    drawn uniformly from `reactions`. Raises ValueError if there are too few consenting users.
    """
    needed = n_canaries * users_per_canary
    if needed > len(consenting_user_ids):
        raise ValueError(
            f"{n_canaries} canaries x {users_per_canary} users need {needed} "
            f"consenting users, only {len(consenting_user_ids)} exist"
        )
    secrets = rng.choice(SECRET_SPACE_SIZE, size=n_canaries + n_fresh, replace=False)
    texts = [CANARY_TEMPLATE.format(secret=format_secret(int(s), secret_format)) for s in secrets]
    hosts = rng.choice(len(consenting_user_ids), size=needed, replace=False)
    hosts = hosts.reshape(n_canaries, users_per_canary)
    reaction_picks = rng.integers(len(reactions), size=n_canaries)
    # Bernoulli(1/2) inclusion (Steinke et al. 2023's one-run audit); drawn last so that
    # "fixed" manifests are unchanged
    planted = rng.random(n_canaries) < 0.5 if inclusion == "bernoulli" else np.ones(n_canaries, bool)
    inserted = tuple(
        Canary(
            canary_id=f"canary-{i:03d}",
            text=texts[i],
            user_ids=tuple(consenting_user_ids[j] for j in sorted(hosts[i])),
            repeats=repeats,
            reaction=reactions[reaction_picks[i]],
            planted=bool(planted[i]),
        )
        for i in range(n_canaries)
    )
    return CanaryManifest(
        template=CANARY_TEMPLATE,
        secret_space=secret_space(secret_format),
        inserted=inserted,
        fresh=tuple(texts[n_canaries:]),
    )
