"""One privacy plan per run: the (σ, q, steps, δ) a mechanism will execute, decided once, before training.

Every place that needs to know what a run will do asks this module, and only this module: the
central DP-SGD trainer executes ``plan.noise_multiplier``, ``plan.sample_rate`` and ``plan.steps``;
DP-FedAvg and client-level DP-SGD build their settings from it; the ledger's pre-check and the
budget CLI (``python -m sandbox.budget``) read their numbers from it. So what is planned, what is
reported and what runs are the same numbers.

Schedules (what "epochs" means):

* central DP-SGD with expected batch B over N examples: Opacus' Poisson loader runs at
  q = 1/⌈N/B⌉ (one over the number of batches of the shuffled loader it replaces), for
  steps = max(1, round(epochs · ⌈N/B⌉));
* DP-FedAvg: q = the client sampling rate, steps = rounds (the stop rule may end it earlier);
* client-level DP-SGD: each round a client runs max(1, round(local_epochs / q)) local steps at its
  example rate q; the plan's steps are local steps × rounds (a client in every round, the worst case).

Accounting is delegated: σ from a target ε is Opacus' calibration (``noise_multiplier_for``), and
``planned_epsilon`` is ``epsilon_for`` of the plan's event. The plan functions take plain numbers;
``plan_for`` reads them off a ``RunConfig`` (resolving δ as ``sandbox.prepare.resolve_delta`` does).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

from sandbox.config.schema import ConfigError, RunConfig
from sandbox.privacy.accounting import epsilon_for, noise_multiplier_for
from sandbox.privacy.delta import check_delta, default_delta
from sandbox.privacy.events import (
    ACCOUNTANTS,
    TREE_SAMPLING,
    UNITS,
    PrivacyEvent,
    PrivacyInputError,
    SubsampledGaussianEvent,
    UnsupportedAccountingError,
    joint_noise_multiplier,
    validate_privacy_inputs,
)
from sandbox.privacy.tree import tree_events, tree_noise_multiplier_for, tree_steps

SAMPLING = "poisson"
PLANNED_MECHANISMS = ("dpsgd", "dpfedavg", "dpftrl", "client_dpsgd", "gaussian")


class PlanInputError(PrivacyInputError):
    """An impossible plan input; ``key`` is the plain-number parameter it concerns (``plan_for`` names
    the config key, the budget CLI its flag)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class PrivacyPlan:
    """What one private model will execute and what that costs, decided before training.

    noise_multiplier: σ the mechanism uses (DP-FedAvg with adaptive clipping: the total z, split
    into ``components``). sample_rate: Poisson q per step (``exact_sample_rate`` the same as a
    Fraction where it is 1/⌈N/B⌉). steps: central DP-SGD optimizer steps; DP-FedAvg rounds (at
    most: ``stop_at_epsilon`` may stop it earlier); client DP-SGD local steps × rounds.
    planned_epsilon: ``epsilon_for`` of ``event()`` at ``delta`` with ``accountant``.
    """

    mechanism: str  # dpsgd | dpfedavg | client_dpsgd | gaussian (bare (σ, q, steps), e.g. the budget CLI)
    unit: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str
    planned_epsilon: float
    target_epsilon: float | None = None
    calibrated: bool = False  # σ found by Opacus for target_epsilon over the planned steps
    stop_at_epsilon: float | None = None  # DP-FedAvg, σ given + target: stop before a round passes it
    sampling: str = SAMPLING
    exact_sample_rate: Fraction | None = None
    components: tuple[tuple[str, float], ...] = ()  # adaptive clipping: ("update", z_Δ), ("count", σ_b)
    # the schedule behind (q, steps), for the trainers and for checks
    n_examples: int | None = None  # dpsgd
    batch_size: int | None = None  # dpsgd
    batches_per_epoch: int | None = None  # dpsgd: ⌈N/B⌉
    epochs: float | None = None  # dpsgd: train epochs; client_dpsgd: local epochs
    n_clients: int | None = None  # dpfedavg
    rounds: int | None = None  # dpfedavg, client_dpsgd
    local_steps: int | None = None  # client_dpsgd: per round
    # dpftrl: no sampling (``sample_rate`` is then m/N, the share of clients in a round, not a sampling rate)
    clients_per_round: int | None = None  # dpftrl: m, the fixed denominator
    rounds_per_epoch: int | None = None  # dpftrl: k, rounds per tree (restarts every k rounds)
    tree_steps: tuple[int, ...] = ()  # dpftrl: the rounds of each planned tree

    @property
    def update_noise_multiplier(self) -> float | None:
        """Adaptive clipping: z_Δ of the clipped-update sum (None otherwise)."""
        return dict(self.components).get("update")

    @property
    def count_noise_multiplier(self) -> float | None:
        """Adaptive clipping: σ_b of the unclipped count (None otherwise)."""
        return dict(self.components).get("count")

    @property
    def epsilon_bound(self) -> float:
        """An upper bound on the ε the run reports: ``planned_epsilon``, or the stop rule's target if lower."""
        if self.stop_at_epsilon is None:
            return self.planned_epsilon
        return min(self.planned_epsilon, self.stop_at_epsilon)

    def event(self, steps: int | None = None) -> SubsampledGaussianEvent:
        """The plan as the accountants see it (``steps`` default: all planned steps). With components the
        event's multiplier is their joint one, exactly as the DP-FedAvg server records each round."""
        noise = joint_noise_multiplier(z for _, z in self.components) if self.components else self.noise_multiplier
        return SubsampledGaussianEvent(
            noise_multiplier=noise,
            sample_rate=self.sample_rate,
            steps=self.steps if steps is None else steps,
            sampling=self.sampling,
            components=self.components,
        )

    def events(self) -> list[PrivacyEvent]:
        """What the accountant composes: the one event, or DP-FTRL's trees (one event per tree)."""
        if self.mechanism == "dpftrl":
            return tree_events(self.noise_multiplier, self.tree_steps)
        return [self.event()]

    def epsilon(self, accountant: str | None = None, delta: float | None = None) -> float:
        """ε of all planned steps by ``accountant`` (default the plan's) at ``delta`` (default the plan's)."""
        return epsilon_for(
            events=self.events(),
            delta=self.delta if delta is None else delta,
            accountant=self.accountant if accountant is None else accountant,
        )


# -- validation: one check per input, naming the parameter --------------------------------------


def _check(key: str, **value) -> None:
    try:
        validate_privacy_inputs(**value)
    except PrivacyInputError as error:
        raise PlanInputError(key, str(error)) from None


def _check_count(key: str, value) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise PlanInputError(key, f"{key} must be an integer >= 1, got {value!r}")


def _check_epochs(key: str, value) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise PlanInputError(key, f"{key} must be a finite number > 0, got {value!r}")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise PlanInputError(key, f"{key} must be one of {tuple(choices)}, got {value!r}")


def _check_question(noise_multiplier, target_epsilon, *, both_allowed: bool = False) -> None:
    if noise_multiplier is None and target_epsilon is None:
        raise PlanInputError("noise_multiplier", "give noise_multiplier or target_epsilon")
    if noise_multiplier is not None and target_epsilon is not None and not both_allowed:
        raise PlanInputError("noise_multiplier", "give exactly one of noise_multiplier and target_epsilon")
    if noise_multiplier is not None:
        _check("noise_multiplier", noise_multiplier=noise_multiplier)
    if target_epsilon is not None:
        _check("target_epsilon", target_epsilon=target_epsilon)


# -- schedules -----------------------------------------------------------------------------------


def batches_per_epoch(*, n_examples: int, batch_size: int) -> int:
    """⌈N/B⌉: batches of the shuffled loader; Opacus' Poisson loader then samples at q = 1/⌈N/B⌉."""
    _check_count("n_examples", n_examples)
    _check_count("batch_size", batch_size)
    return -(-int(n_examples) // int(batch_size))


def epoch_steps(*, n_examples: int, batch_size: int, epochs: float) -> int:
    """Central training's steps: max(1, round(epochs · ⌈N/B⌉)) (DP-SGD and non-private alike)."""
    _check_epochs("epochs", epochs)
    return max(1, round(epochs * batches_per_epoch(n_examples=n_examples, batch_size=batch_size)))


def local_steps(*, epochs: float, sample_rate: float) -> int:
    """Steps for ``epochs`` expected passes at Poisson rate q: max(1, round(epochs / q)) (client DP-SGD's
    local steps per round; at q = 1/⌈N/B⌉ the same number as ``epoch_steps``)."""
    _check_epochs("epochs", epochs)
    _check("sample_rate", sample_rate=sample_rate)
    return max(1, round(epochs / sample_rate))


def update_noise_multiplier(total: float, count_noise_multiplier: float) -> float:
    """z_Δ = (z⁻² − σ_b⁻²)^-½: what is left for the update sum when the uncentred unclipped count
    (sensitivity 1) takes σ_b of a total z (the inverse of ``joint_noise_multiplier``; the same
    arithmetic as ``sandbox.federated.aggregate.update_noise_multiplier``, which the server runs)."""
    residual = total**-2 - count_noise_multiplier**-2
    if residual <= 0:
        raise PlanInputError(
            "count_noise_multiplier",
            f"count noise σ_b={count_noise_multiplier} is too small "
            f"for total noise z={total}: need σ_b > z = {total:.4g}",
        )
    return residual**-0.5


def adaptive_components(total: float, count_noise_multiplier: float) -> tuple[tuple[str, float], ...]:
    """Adaptive clipping's two Gaussian queries on one Poisson sample: (("update", z_Δ), ("count", σ_b))."""
    return (
        ("update", update_noise_multiplier(total, count_noise_multiplier)),
        ("count", float(count_noise_multiplier)),
    )


# -- accounting (delegated) ----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _calibrated(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Opacus' σ for the target (cached: the ledger's pre-check and the trainer ask the same question)."""
    with warnings.catch_warnings():  # the search probes σ far from the answer; its warnings are about probes
        warnings.simplefilter("ignore")
        return noise_multiplier_for(
            target_epsilon=target_epsilon, delta=delta, sample_rate=sample_rate, steps=steps, accountant=accountant
        )


def _plan(
    *,
    mechanism: str,
    unit: str,
    sample_rate: float,
    steps: int,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    delta: float,
    accountant: str,
    stop_rule: bool = False,
    split: Callable[[float], tuple[tuple[str, float], ...]] | None = None,
    **schedule,
) -> PrivacyPlan:
    """σ given, or calibrated for the target over (q, steps); then ε of the plan, both delegated."""
    _check("delta", delta=delta)
    _check("sample_rate", sample_rate=sample_rate)
    _check_count("steps", steps)
    _check_choice("accountant", accountant, ACCOUNTANTS)
    _check_choice("unit", unit, UNITS)
    calibrated = noise_multiplier is None
    sigma = (
        float(noise_multiplier)
        if not calibrated
        else _calibrated(float(target_epsilon), float(delta), float(sample_rate), int(steps), accountant)
    )
    plan = PrivacyPlan(
        mechanism=mechanism,
        unit=unit,
        noise_multiplier=sigma,
        sample_rate=float(sample_rate),
        steps=int(steps),
        delta=float(delta),
        accountant=accountant,
        planned_epsilon=math.nan,
        target_epsilon=target_epsilon,
        calibrated=calibrated,
        stop_at_epsilon=target_epsilon if stop_rule and not calibrated else None,
        components=split(sigma) if split else (),
        **schedule,
    )
    return replace(plan, planned_epsilon=plan.epsilon())


# -- one function per mechanism ------------------------------------------------------------------


def plan_dpsgd(
    *,
    n_examples: int,
    batch_size: int,
    epochs: float | None = None,
    steps: int | None = None,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float,
    accountant: str = "rdp",
    unit: str = "example",
) -> PrivacyPlan:
    """Central DP-SGD over ``n_examples`` with expected batch ``batch_size``: q = 1/⌈N/B⌉ and
    steps = max(1, round(epochs · ⌈N/B⌉)) (or ``steps`` given instead of ``epochs``); σ given, or
    calibrated by Opacus for ``target_epsilon`` over those steps."""
    _check_question(noise_multiplier, target_epsilon)
    batches = batches_per_epoch(n_examples=n_examples, batch_size=batch_size)
    if (epochs is None) == (steps is None):
        raise PlanInputError("epochs", "give exactly one of epochs and steps")
    if epochs is not None:
        steps = epoch_steps(n_examples=n_examples, batch_size=batch_size, epochs=epochs)
    exact = Fraction(1, batches)
    return _plan(
        mechanism="dpsgd",
        unit=unit,
        sample_rate=float(exact),
        steps=steps,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        accountant=accountant,
        exact_sample_rate=exact,
        n_examples=int(n_examples),
        batch_size=int(batch_size),
        batches_per_epoch=batches,
        epochs=epochs,
    )


def plan_dpfedavg(
    *,
    n_clients: int,
    sample_rate: float,
    rounds: int,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float,
    accountant: str = "rdp",
    unit: str = "user",
    clipping: str = "fixed",
    count_noise_multiplier: float | None = None,
) -> PrivacyPlan:
    """DP-FedAvg: ``rounds`` rounds at client rate q. σ (the total z) given, or calibrated for
    ``target_epsilon`` over the rounds; both given: σ runs and training stops before a round would
    pass the target (``stop_at_epsilon``). Adaptive clipping splits z into the update's z_Δ and the
    count's σ_b (default q·N/20, Andrew et al. 2021), which must exceed z."""
    _check_question(noise_multiplier, target_epsilon, both_allowed=True)
    _check_count("n_clients", n_clients)
    _check_count("rounds", rounds)
    _check_choice("clipping", clipping, ("fixed", "adaptive"))
    _check("sample_rate", sample_rate=sample_rate)
    split = None
    if clipping == "adaptive":
        if count_noise_multiplier is not None:
            _check("count_noise_multiplier", noise_multiplier=count_noise_multiplier)

        def split(total: float) -> tuple[tuple[str, float], ...]:
            default = sample_rate * n_clients / 20  # Andrew et al. 2021's suggestion
            count = default if count_noise_multiplier is None else count_noise_multiplier
            if count <= total:
                raise PlanInputError(
                    "count_noise_multiplier",
                    f"σ_b = {count:.4g} must exceed the total noise multiplier z = {total:.4g} (the update gets "
                    f"z_Δ = (z⁻² − σ_b⁻²)^-½); "
                    + ("set it explicitly" if count_noise_multiplier is None else "raise it")
                    + f" (default q·N/20 = {default:.4g} for {n_clients} clients)",
                )
            return adaptive_components(total, count)

    return _plan(
        mechanism="dpfedavg",
        unit=unit,
        sample_rate=sample_rate,
        steps=rounds,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        accountant=accountant,
        stop_rule=True,
        split=split,
        n_clients=int(n_clients),
        rounds=int(rounds),
    )


@functools.lru_cache(maxsize=256)
def _calibrated_tree(target_epsilon: float, delta: float, steps: tuple[int, ...]) -> float:
    return tree_noise_multiplier_for(target_epsilon=target_epsilon, delta=delta, steps=steps)


def plan_dpftrl(
    *,
    n_clients: int,
    clients_per_round: int,
    rounds: int,
    rounds_per_epoch: int | None = None,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float,
    accountant: str = "rdp",
    unit: str = "user",
    max_participations_per_tree: int = 1,
) -> PrivacyPlan:
    """DP-FTRL with tree aggregation and restarts (Kairouz et al. 2021): ``rounds`` rounds of exactly m =
    ``clients_per_round`` clients, no sampling; the tree restarts every k = ``rounds_per_epoch`` rounds
    (default ⌊N/m⌋: every client once per epoch), and within a tree each client takes part at most once,
    so k·m ≤ N. z given, or calibrated for ``target_epsilon`` by dp-accounting over the planned trees.
    Refuses what dp-accounting's tree-aggregation RDP does not cover (another accountant, a client
    more than once per tree)."""
    _check_question(noise_multiplier, target_epsilon)
    _check_count("n_clients", n_clients)
    _check_count("clients_per_round", clients_per_round)
    _check_count("rounds", rounds)
    _check("delta", delta=delta)
    _check_choice("unit", unit, UNITS)
    if accountant != "rdp":
        raise PlanInputError(
            "accountant",
            f"accountant {accountant!r} cannot account for DP-FTRL's tree aggregation: dp-accounting "
            "analyses it with its RDP accountant only; use rdp",
        )
    if max_participations_per_tree != 1:
        raise PlanInputError(
            "max_participations_per_tree",
            f"max_participations_per_tree must be 1, got {max_participations_per_tree!r}: dp-accounting's "
            "tree-aggregation RDP covers each client at most once per tree",
        )
    if clients_per_round > n_clients:
        raise PlanInputError(
            "clients_per_round", f"clients_per_round {clients_per_round} exceeds the {n_clients} clients"
        )
    most = n_clients // clients_per_round  # rounds in which m distinct clients can take part
    if rounds_per_epoch is None:
        rounds_per_epoch = most
    _check_count("rounds_per_epoch", rounds_per_epoch)
    if rounds_per_epoch > most:
        raise PlanInputError(
            "rounds_per_epoch",
            f"rounds_per_epoch {rounds_per_epoch} × clients_per_round {clients_per_round} > {n_clients} clients: "
            "some client would take part twice in one tree, which dp-accounting's tree-aggregation RDP does not "
            f"cover; at most {most}",
        )
    steps = tuple(tree_steps(rounds=rounds, rounds_per_tree=rounds_per_epoch))
    calibrated = noise_multiplier is None
    try:
        z = float(noise_multiplier) if not calibrated else _calibrated_tree(float(target_epsilon), float(delta), steps)
    except UnsupportedAccountingError as error:
        raise PlanInputError("accountant", str(error)) from None
    plan = PrivacyPlan(
        mechanism="dpftrl",
        unit=unit,
        noise_multiplier=z,
        sample_rate=clients_per_round / n_clients,
        steps=int(rounds),
        delta=float(delta),
        accountant=accountant,
        planned_epsilon=math.nan,
        target_epsilon=target_epsilon,
        calibrated=calibrated,
        sampling=TREE_SAMPLING,
        n_clients=int(n_clients),
        rounds=int(rounds),
        clients_per_round=int(clients_per_round),
        rounds_per_epoch=int(rounds_per_epoch),
        tree_steps=steps,
    )
    return replace(plan, planned_epsilon=plan.epsilon())


def plan_client_dpsgd(
    *,
    local_sample_rate: float,
    local_epochs: float,
    rounds: int,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float,
    accountant: str = "rdp",
) -> PrivacyPlan:
    """Client-level DP-SGD: each round a client runs max(1, round(local_epochs / q)) DP-SGD steps at its
    example rate q; planned for a client in every round (local steps × rounds), the worst case."""
    _check_question(noise_multiplier, target_epsilon)
    _check_count("rounds", rounds)
    per_round = local_steps(epochs=local_epochs, sample_rate=local_sample_rate)
    return _plan(
        mechanism="client_dpsgd",
        unit="example",
        sample_rate=local_sample_rate,
        steps=per_round * rounds,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        accountant=accountant,
        epochs=local_epochs,
        rounds=int(rounds),
        local_steps=per_round,
    )


def plan_gaussian(
    *,
    sample_rate: float,
    steps: int,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float,
    accountant: str = "rdp",
    unit: str = "example",
) -> PrivacyPlan:
    """A bare Poisson-subsampled Gaussian mechanism, (σ, q, steps) given directly (the budget CLI's
    ``--sample-rate`` with ``--steps``); σ given or calibrated for ``target_epsilon``."""
    _check_question(noise_multiplier, target_epsilon)
    return _plan(
        mechanism="gaussian",
        unit=unit,
        sample_rate=sample_rate,
        steps=steps,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        delta=delta,
        accountant=accountant,
    )


# -- from a run's config -------------------------------------------------------------------------

_CONFIG_KEYS = {
    "dpsgd": {"n_examples": "data", "batch_size": "train.batch_size", "epochs": "train.epochs"},
    "dpfedavg": {
        "sample_rate": "federation.sample_rate",
        "rounds": "federation.rounds",
        "count_noise_multiplier": "privacy.count_noise_multiplier",
        "n_clients": "data",
        "clipping": "privacy.clipping",
        "unit": "federation.unit",
    },
    "dpftrl": {
        "rounds": "federation.rounds",
        "n_clients": "data",
        "unit": "federation.unit",
    },
    "client_dpsgd": {
        "sample_rate": "privacy.local_sample_rate",
        "epochs": "federation.local_epochs",
        "rounds": "federation.rounds",
    },
}


def delta_for(cfg: RunConfig, *, n: int, unit: str) -> float:
    """δ over ``n`` units: ``privacy.delta`` (refused if ≥ 1/n) or ``default_delta(n)``, as
    ``sandbox.prepare.resolve_delta``."""
    if cfg.privacy.delta is None:
        return default_delta(n)
    try:
        check_delta(delta=cfg.privacy.delta, n=n, unit=unit)
    except ValueError as exc:
        raise ConfigError(f"privacy.delta: {exc}") from None
    return cfg.privacy.delta


def plan_for(cfg: RunConfig, *, n_examples: int | None = None, n_clients: int | None = None) -> PrivacyPlan | None:
    """The plan of ``cfg.privacy.mechanism`` (None for ``none``). ``n_examples``: training examples
    (dpsgd, client_dpsgd); ``n_clients``: clients of the partition (dpfedavg). An impossible value is a
    ConfigError naming its key."""
    p, fed = cfg.privacy, cfg.federation
    mechanism = p.mechanism
    if mechanism == "none":
        return None
    needed = {
        "dpsgd": ("n_examples", n_examples),
        "client_dpsgd": ("n_examples", n_examples),
        "dpfedavg": ("n_clients", n_clients),
        "dpftrl": ("n_clients", n_clients),
    }.get(mechanism)
    if needed is None:
        raise ConfigError(f"privacy.mechanism: no privacy plan for {mechanism!r}")
    if needed[1] is None:
        raise TypeError(f"plan_for({mechanism!r}) needs {needed[0]}")
    question = {"noise_multiplier": p.noise_multiplier, "target_epsilon": p.target_epsilon, "accountant": p.accountant}
    try:
        if mechanism == "dpsgd":
            return plan_dpsgd(
                n_examples=n_examples,
                batch_size=cfg.train.batch_size,
                epochs=cfg.train.epochs,
                delta=delta_for(cfg, n=n_examples, unit="example"),
                **question,
            )
        if mechanism == "client_dpsgd":
            return plan_client_dpsgd(
                local_sample_rate=p.local_sample_rate,
                local_epochs=fed.local_epochs,
                rounds=fed.rounds,
                delta=delta_for(cfg, n=n_examples, unit="example"),
                **question,
            )
        if mechanism == "dpftrl":
            return plan_dpftrl(
                n_clients=n_clients,
                clients_per_round=p.clients_per_round,
                rounds=fed.rounds,
                rounds_per_epoch=p.rounds_per_epoch,
                delta=delta_for(cfg, n=n_clients, unit=fed.unit),
                unit=fed.unit,
                max_participations_per_tree=p.max_participations_per_tree,
                **question,
            )
        return plan_dpfedavg(
            n_clients=n_clients,
            sample_rate=fed.sample_rate,
            rounds=fed.rounds,
            delta=delta_for(cfg, n=n_clients, unit=fed.unit),
            unit=fed.unit,
            clipping=p.clipping,
            count_noise_multiplier=p.count_noise_multiplier,
            **question,
        )
    except PlanInputError as error:
        key = _CONFIG_KEYS[mechanism].get(error.key, f"privacy.{error.key}")
        message = str(error)
        raise ConfigError(message if message.startswith(key) else f"{key}: {message}") from None
