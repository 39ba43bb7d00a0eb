"""Before a claim trusts a record: is it possible, and is it the record of what ran?

The record was read as a typed ``sandbox.record.RunRecord`` (keys present, values of their type);
``verify_record`` raises ``ClaimError`` (exit 3, nothing written; the message names the file and
the key) for a record that is impossible or not a record of what ran:

* ``status`` other than ``completed``, ``stopped_budget`` or ``failed`` (a ``failed`` record, whose
  audit found a probable DP bug, is judged: every row FAILs, ``checks.judge_row``);
* ``privacy.mechanism`` unknown; ``privacy.unit`` that does not fit it (``dpsgd`` and
  ``client_dpsgd``: example; ``dpfedavg``, ``dpftrl``: user or workspace); ``mechanism: none`` with an ε;
  a private mechanism without one;
* ``privacy.epsilon`` NaN or negative (``inf`` is possible: "no finite guarantee", the ε row
  FAILs); ``privacy.noise_source`` other than ``secure`` or ``seeded`` (absent is allowed: such
  records predate secure noise, and their ε row FAILs);
* an ε that does not recompute from ``privacy.events`` with ``privacy.accountant`` at
  ``privacy.delta`` (``sandbox.privacy.epsilon_for``; relative tolerance 1e-6), or events the
  accountant's ``SubsampledGaussianEvent`` rejects (an unknown key is named);
* for a record read from a run directory: ``model.sha256`` missing, ``model.pt`` missing beside
  it, or ``model.pt`` whose fingerprint (``sandbox.record.model_fingerprint``) differs: a stale
  record of an earlier run beside a new model.

It returns what it verified and what it could not (a record given as a dict has no model file),
one line each, for the result's ``record_checks``. torch and the accountants are imported only
when a record needs them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

from sandbox.claim.checks import ClaimError, Record
from sandbox.privacy.events import event_fields, event_from_json

STATUSES = ("completed", "stopped_budget", "failed")
UNITS_OF_MECHANISM = {
    "dpsgd": ("example",),
    "client_dpsgd": ("example",),
    "dpfedavg": ("user", "workspace"),
    "dpftrl": ("user", "workspace"),
    "none": None,
}
NOISE_SOURCES = ("secure", "seeded")  # sandbox.privacy.noise.NOISE_SOURCES
EPSILON_RTOL = 1e-6
MODEL_FILE = "model.pt"


def verify_record(record: Record) -> tuple[str, ...]:
    """Refuse (ClaimError) an impossible or stale record; return what was verified, one line each."""
    status = record.run.status
    if status not in STATUSES:
        raise ClaimError(
            f"{record.origin}: status: {status!r} is not the status of a finished run (one of {', '.join(STATUSES)})"
        )
    return (_verify_privacy(record), _verify_model(record))


def _verify_privacy(record: Record) -> str:
    origin, privacy = record.origin, record.run.privacy
    mechanism = privacy.mechanism
    if mechanism not in UNITS_OF_MECHANISM:
        raise ClaimError(
            f"{origin}: privacy.mechanism: unknown mechanism {mechanism!r} (known: {', '.join(UNITS_OF_MECHANISM)})"
        )
    eps = privacy.epsilon
    if mechanism == "none":
        if eps is not None:
            raise ClaimError(
                f"{origin}: privacy.epsilon: {eps!r}, but privacy.mechanism is 'none': a run without DP has no ε (null)"
            )
        return "not private (mechanism none, ε null)"
    if eps is None:
        raise ClaimError(
            f"{origin}: privacy.epsilon: null, but privacy.mechanism {mechanism!r} is private: the "
            "record must state the ε it spent"
        )
    eps = float(eps)
    if math.isnan(eps) or eps < 0:
        raise ClaimError(
            f"{origin}: privacy.epsilon: {eps!r} is not a possible ε (a number ≥ 0, or inf for no finite guarantee)"
        )
    unit, units = privacy.unit, UNITS_OF_MECHANISM[mechanism]
    if unit not in units:
        raise ClaimError(
            f"{origin}: privacy.unit: {unit!r} does not fit privacy.mechanism {mechanism!r} "
            f"(its unit is {' or '.join(units)})"
        )
    if "noise_source" in privacy and privacy.noise_source not in NOISE_SOURCES:
        raise ClaimError(
            f"{origin}: privacy.noise_source: {privacy.noise_source!r} is not a noise source "
            f"(one of {', '.join(NOISE_SOURCES)})"
        )
    return _verify_epsilon(record, eps)


def _thaw(value):
    """A record's read-only JSON data → plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _as_tuples(value):
    """JSON lists → tuples, all the way down (events are frozen dataclasses of tuples)."""
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def _verify_epsilon(record: Record, eps: float) -> str:
    # lazy: sandbox.privacy loads Opacus (seconds); a claim check needs it only to recompute an ε
    from sandbox.privacy import (
        ACCOUNTANTS,
        AccountingError,
        PrivacyInputError,
        epsilon_for,
        validate_privacy_inputs,
    )

    origin, privacy = record.origin, record.run.privacy
    accountant = privacy.accountant
    if accountant not in ACCOUNTANTS:
        raise ClaimError(
            f"{origin}: privacy.accountant: {accountant!r} is not an accountant (one of {', '.join(ACCOUNTANTS)})"
        )
    if privacy.delta is None:
        raise ClaimError(f"{origin}: privacy.delta: expected a number, got None")
    delta = float(privacy.delta)
    try:
        validate_privacy_inputs(delta=delta)
    except PrivacyInputError as exc:
        raise ClaimError(f"{origin}: privacy.delta: {exc}") from None
    raw = privacy.events
    events = []
    for i, event in enumerate(raw):
        where = f"{origin}: privacy.events[{i}]"
        if not isinstance(event, Mapping):
            raise ClaimError(f"{where}: expected an event mapping, got {event!r}")
        known = set(event_fields(dict(event)))  # a DP-FTRL tree (kind) or a Poisson-subsampled Gaussian
        unknown = sorted(set(event) - known)
        if unknown:
            raise ClaimError(f"{where}.{unknown[0]}: unknown event key (known: {', '.join(sorted(known))})")
        try:
            events.append(event_from_json(_as_tuples(_thaw(event))))
        except TypeError as exc:  # a required key missing
            raise ClaimError(f"{where}: not an event: {exc}") from None
        except PrivacyInputError as exc:
            raise ClaimError(f"{where}: impossible event: {exc}") from None
    try:
        with warnings.catch_warnings():  # the accountants' numerical warnings were the run's to show
            warnings.simplefilter("ignore")
            recomputed = epsilon_for(events=events, delta=delta, accountant=accountant)
    except (PrivacyInputError, AccountingError) as exc:
        raise ClaimError(
            f"{origin}: privacy.events: ε cannot be recomputed with the {accountant} accountant: {exc}"
        ) from None
    same = eps == recomputed or math.isclose(eps, recomputed, rel_tol=EPSILON_RTOL)
    if not same:
        raise ClaimError(
            f"{origin}: privacy.epsilon: {eps!r} does not recompute from privacy.events "
            f"({len(events)} event(s), {accountant} accountant, δ = {delta:g}): they give "
            f"{recomputed!r} (relative tolerance {EPSILON_RTOL:g}); the record does not state "
            "what ran"
        )
    return f"ε recomputed from {len(events)} recorded event(s) ({accountant}, δ = {delta:g}): {recomputed:.6g}"


def _verify_model(record: Record) -> str:
    if record.path is None:
        return (
            "model.sha256 not verified: a record given as a dict has no model.pt beside it "
            "(check the run directory to verify it)"
        )
    sha = record.run.model.sha256
    model = record.path.parent / MODEL_FILE
    if not model.is_file():
        raise ClaimError(
            f"{model}: missing beside {record.path}, so its model.sha256 cannot be shown to be "
            "the model this record describes"
        )
    import torch  # lazy: torch only to fingerprint a model file

    from sandbox.record import model_fingerprint

    try:
        state = torch.load(model, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise ClaimError(f"{model}: not a readable model state_dict: {' '.join(str(exc).split())[:300]}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClaimError(f"{model}: not a model state_dict (a mapping of names to tensors)")
    actual = model_fingerprint(state)
    if actual != sha:
        raise ClaimError(
            f"{record.path}: model.sha256: {sha[:12]}… does not match {model} (its fingerprint is "
            f"{actual[:12]}…): the record is not of the model beside it (a stale record from an "
            "earlier run?); re-run, or check the record that belongs to this model"
        )
    return f"model.sha256 matches {MODEL_FILE}"
