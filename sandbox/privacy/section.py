"""The record's ``privacy`` section, read off a ``PrivacyBook`` (the one place ε comes from)."""

from __future__ import annotations

from sandbox.privacy import PrivacyBook
from sandbox.privacy.noise import NOISE_SOURCES, SEEDED_NOISE_WARNING

__all__ = ["privacy_section"]


def privacy_section(
    *,
    mechanism: str,
    unit: str,
    book: PrivacyBook | None,
    steps: int,
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    clip_norm: float | None = None,
    target_epsilon: float | None = None,
    noise_source: str | None = None,
    sampling: str = "poisson",
    neighbouring_relation: str | None = None,
    **extra,
) -> dict:
    """The ``privacy`` section (keys: ``sandbox.record.PrivacySection``, docs/record.md).

    ``epsilon`` is None exactly when the run was not private. ``steps`` are optimizer steps
    (central) or rounds (federated) that ran. A private run must say where its noise came
    from (``noise_source``, ``sandbox.privacy.noise``). ``sampling`` and ``neighbouring_relation``
    default to the Poisson mechanisms' (DP-FTRL states its own): ``secure_rng`` is true only for
    ``secure``, and a ``seeded`` run carries ``noise_warning``: its noise can be regenerated
    from the record, so it is not private against whoever holds the record.
    """
    if book is None:
        return {
            "mechanism": mechanism,
            "unit": unit,
            "epsilon": None,
            "delta": None,
            "accountant": None,
            "noise_multiplier": None,
            "sample_rate": None,
            "sampling": None,
            "steps": steps,
            "clip_norm": None,
            "neighbouring_relation": None,
            "noise_source": None,
            "events": [],
        }
    if noise_source not in NOISE_SOURCES:
        raise ValueError(f"a private run's record needs its noise source, one of {NOISE_SOURCES}; got {noise_source!r}")
    warning = {"noise_warning": SEEDED_NOISE_WARNING} if noise_source == "seeded" else {}
    return {
        "mechanism": mechanism,
        "unit": book.unit,
        "epsilon": book.epsilon() if book.steps else 0.0,
        "delta": book.delta,
        "accountant": book.accountant,
        "noise_multiplier": noise_multiplier,
        "sample_rate": sample_rate,
        "sampling": sampling,
        "steps": book.steps,
        "clip_norm": clip_norm,
        "target_epsilon": target_epsilon,
        "neighbouring_relation": neighbouring_relation or f"add/remove one {book.unit}",
        # secure: the noise generators' state came from the OS CSPRNG and was never written down;
        # seeded: replayable from `seed`. Sampling is seeded either way (sandbox.privacy.noise)
        "noise_source": noise_source,
        "secure_rng": noise_source == "secure",
        **warning,
        "events": [e.to_json() for e in book.events],
        **extra,
    }
