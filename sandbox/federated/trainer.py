"""Federated training of a run: clients from the split, a server, an engine, a learning curve.

FedAvg when ``privacy=none``; user-level (or workspace-level) DP-FedAvg when
``privacy=dpfedavg``; example-level DP-SGD inside each client when ``privacy=client_dpsgd``. The engine (in-process or Flower) only moves data between the shared
client and server functions.
"""

from __future__ import annotations

import time

import numpy as np
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sandbox.config import ConfigError, RunConfig
from sandbox.federated.audits import observers_for
from sandbox.federated.client_dp import LocalDPSGD
from sandbox.federated.clients import ClientPartition, partition_clients
from sandbox.federated.ftrl import DPFTRLServer, DPFTRLSettings
from sandbox.federated.inprocess import run_inprocess
from sandbox.federated.server import DPFedAvgSettings, FederatedServer
from sandbox.prepare import Prepared, Seeds
from sandbox.privacy import PrivacyBook
from sandbox.privacy.events import TREE_RELATION, TREE_SAMPLING
from sandbox.privacy.plan import adaptive_components, plan_for
from sandbox.privacy.section import privacy_section
from sandbox.record import Outcome
from sandbox.tasks.base import Examples
from sandbox.train.progress import progress_bar


def dp_settings(cfg: RunConfig, n_clients: int) -> tuple[DPFedAvgSettings, PrivacyBook]:
    """The settings of the run's plan (``sandbox.privacy.plan``): δ, σ (calibrated by Opacus if only a
    target ε is given), adaptive clipping's count noise and the stop rule."""
    p = cfg.privacy
    plan = plan_for(cfg, n_clients=n_clients)
    book = PrivacyBook(unit=plan.unit, delta=plan.delta, accountant=plan.accountant)
    settings = DPFedAvgSettings(
        noise_multiplier=plan.noise_multiplier,
        clip_norm=p.clip_norm,
        clipping=p.clipping,
        clipping_site=p.clipping_site,
        target_quantile=p.target_quantile,
        clip_lr=p.clip_lr,
        count_noise_multiplier=plan.count_noise_multiplier,
        stop_at_epsilon=plan.stop_at_epsilon,
    )
    return settings, book


def dpftrl_settings(cfg: RunConfig, n_clients: int) -> tuple[DPFTRLSettings, PrivacyBook]:
    """DP-FTRL's plan (``plan_dpftrl``): z (calibrated by dp-accounting for a target ε), m, k, δ; the
    server step's momentum from ``federation.server_optimizer`` (fedavg: none; fedavgm: DP-FTRLM)."""
    p, fed = cfg.privacy, cfg.federation
    plan = plan_for(cfg, n_clients=n_clients)
    settings = DPFTRLSettings(
        noise_multiplier=plan.noise_multiplier,
        clip_norm=p.clip_norm,
        clients_per_round=plan.clients_per_round,
        rounds_per_epoch=plan.rounds_per_epoch,
        participation=p.participation,
        momentum=fed.server_momentum if fed.server_optimizer == "fedavgm" else 0.0,
    )
    return settings, PrivacyBook(unit=plan.unit, delta=plan.delta, accountant=plan.accountant)


def _adaptive_noise(dp: DPFedAvgSettings) -> dict:
    """Adaptive clipping: the update's own noise multiplier z_Δ beside the joint z and σ_b."""
    if dp.clipping != "adaptive":
        return {}
    update = dict(adaptive_components(dp.noise_multiplier, dp.count_noise_multiplier))["update"]
    return {
        "update_noise_multiplier": update,
        "noise_split": "z = (z_Δ⁻² + σ_b⁻²)^-½: the update sum and the uncentred count (sensitivity 1) "
        "released on one Poisson sample",
    }


def _dpftrl_section(cfg: RunConfig, server: DPFTRLServer) -> dict:
    f, fed = server.ftrl, cfg.federation
    return privacy_section(
        mechanism="dpftrl",
        unit=fed.unit,
        book=server.book,
        steps=server.round,
        noise_multiplier=f.noise_multiplier,
        sample_rate=None,
        clip_norm=f.clip_norm,
        target_epsilon=cfg.privacy.target_epsilon,
        noise_source=cfg.privacy.noise_source,
        sampling=TREE_SAMPLING,
        neighbouring_relation=TREE_RELATION.format(unit=fed.unit),
        participation=server.participation_record(),
        tree_aggregation="binary tree over each epoch's rounds, noise N(0, (z·C)²) per node; the prefix sum at "
        "round t carries the nodes of t's binary decomposition (TF-Privacy TreeAggregator, no Honaker estimator)",
        server_step=(
            f"FTRL: θ = θ_tree + server_lr · μ, μ = {f.momentum:g}·μ + (prefix sum + tree noise)/m (DP-FTRLM)"
            if f.momentum
            else "FTRL: θ = θ_tree + server_lr · (prefix sum + tree noise)/m"
        ),
        server_lr=fed.server_lr,
        denominator="fixed (m = privacy.clients_per_round)",
        epsilon_scope="dp-accounting RDP over SingleEpochTreeAggregationDpEvent per tree, composed over the trees",
    )


def client_dpsgd_settings(cfg: RunConfig, n_examples: int) -> tuple[LocalDPSGD, PrivacyBook]:
    """The settings of the run's plan: σ calibrated (by Opacus) so that a client taking part in every round
    stays within the target ε, local steps per round, δ over the examples."""
    p = cfg.privacy
    plan = plan_for(cfg, n_examples=n_examples)
    local = LocalDPSGD(
        noise_multiplier=plan.noise_multiplier,
        clip_norm=p.clip_norm,
        sample_rate=plan.sample_rate,
        steps=plan.local_steps,
        noise_source=p.noise_source,
    )
    return local, PrivacyBook(unit=plan.unit, delta=plan.delta, accountant=plan.accountant)


class _FederatedCurve:
    """Per round: clients sampled, clip norm in use, ε so far; held-out-user metrics every k rounds."""

    def __init__(self, eval_model, test: Examples, *, task, every: int, rounds: int, show):
        self.eval_model, self.test, self.task, self.every, self.rounds = eval_model, test, task, every, rounds
        self.show = show
        self.points: list[dict] = []
        self.eval_seconds = 0.0  # wall time of the held-out evaluations (inside training_seconds)

    def __call__(self, summary: dict, params) -> None:
        point = dict(summary)
        if summary["round"] % self.every == 0 or summary["round"] == self.rounds:
            point.update(self.evaluate(params))
        self.points.append(point)
        self.show(summary["round"], self.rounds, summary["train_loss"])

    def evaluate(self, params) -> dict:
        started = time.perf_counter()
        vector_to_parameters(params.clone(), self.eval_model.parameters())
        metrics = self.task.evaluate(self.eval_model, self.test)
        self.eval_seconds += time.perf_counter() - started
        return metrics


def run_engine(
    engine: str,
    server: FederatedServer,
    *,
    partition: ClientPartition,
    data: Prepared,
    model,
    cfg: RunConfig,
    on_round,
    grid=None,
) -> dict:
    """Run the server's rounds with ``engine``; returns the engine's own timing (seconds) for the record.

    ``grid`` is the Flower Grid of the ServerApp this run executes in (engine ``deployment`` only).
    """
    if engine == "inprocess":
        run_inprocess(
            server,
            partition=partition,
            examples=data.train,
            model=model,
            local=cfg.federation.local,
            on_round=on_round,
            client_batch=cfg.federation.client_batch,
        )
        return {}
    # the Flower engines import flwr (and Ray) only when they run: seconds of start-up otherwise
    if engine == "flower":
        from sandbox.federated.flower_simulation import run_flower_simulation

        return run_flower_simulation(server, n_clients=len(partition), cfg=cfg, on_round=on_round)
    if grid is None:
        raise ConfigError(
            "federation.engine: 'deployment' runs inside a Flower ServerApp (scripts/flower-deploy, "
            "`flwr run .`); here use 'inprocess' or 'flower'"
        )
    from sandbox.federated.flower_server import run_flower_rounds

    return run_flower_rounds(grid, server, n_clients=len(partition), cfg=cfg, on_round=on_round)


def train_federated(cfg: RunConfig, data: Prepared, seeds: Seeds, *, grid=None) -> Outcome:
    fed = cfg.federation
    partition = partition_clients(data.corpus, data.train, unit=fed.unit)
    model = data.new_model(cfg, seeds)
    dp, local_dp, book = None, None, None
    if cfg.privacy.mechanism == "dpfedavg":
        dp, book = dp_settings(cfg, len(partition))
    elif cfg.privacy.mechanism == "client_dpsgd":
        local_dp, book = client_dpsgd_settings(cfg, len(data.train))
    observers = observers_for(
        cfg, model=model, n_clients=len(partition), seed=seeds.federation, example_counts=partition.sizes()
    )
    if cfg.privacy.mechanism == "dpftrl":
        ftrl, book = dpftrl_settings(cfg, len(partition))
        server = DPFTRLServer(
            params=parameters_to_vector(model.parameters()).detach(),
            n_clients=len(partition),
            cfg=fed,
            ftrl=ftrl,
            book=book,
            seed=seeds.federation,
            noise_source=cfg.privacy.noise_source,
            observers=observers,
        )
    else:
        server = FederatedServer(
            params=parameters_to_vector(model.parameters()).detach(),
            n_clients=len(partition),
            cfg=fed,
            dp=dp,
            book=book,
            seed=seeds.federation,
            local_dp=local_dp,
            noise_source=cfg.privacy.noise_source,
            observers=observers,
        )
    started = time.perf_counter()
    with progress_bar(cfg.progress, unit="rounds") as show:
        curve = _FederatedCurve(
            data.new_model(cfg, seeds), data.test, task=cfg.task, every=fed.eval_every, rounds=fed.rounds, show=show
        )
        engine_timing = run_engine(
            fed.engine, server, partition=partition, data=data, model=model, cfg=cfg, on_round=curve, grid=grid
        )
    secagg = engine_timing.pop("secagg", None)  # SecAgg+'s parameters: beside the mechanism, not in timing
    seconds = time.perf_counter() - started
    if not curve.points:  # the budget allowed no round at all: the record shows the initial model
        curve.points.append(
            {
                "round": 0,
                "clients": 0,
                "clip_norm": server.clip_norm,
                "epsilon": 0.0 if book else None,
                "train_loss": None,
            }
        )
    if "top1" not in curve.points[-1]:  # stopped early: evaluate where it stopped
        curve.points[-1].update(curve.evaluate(server.params))
    vector_to_parameters(server.params.clone(), model.parameters())
    if local_dp is not None:
        privacy = privacy_section(
            mechanism="client_dpsgd",
            unit="example",
            book=book,
            steps=book.steps,
            noise_multiplier=local_dp.noise_multiplier,
            sample_rate=local_dp.sample_rate,
            clip_norm=local_dp.clip_norm,
            target_epsilon=cfg.privacy.target_epsilon,
            sampling="poisson (each client's examples, per local step)",
            rounds=server.round,
            local_steps_per_round=local_dp.steps,
            worst_client_rounds=int(server.participation.max(initial=0)),
            epsilon_scope="the client that took part in the most rounds; every other example has ε ≤ this",
            amplification_by_client_sampling=False,
            denominator="fixed (q·n of the client)",
            noise_source=local_dp.noise_source,
        )
    elif isinstance(server, DPFTRLServer):
        privacy = _dpftrl_section(cfg, server)
    elif dp is None:
        privacy = privacy_section(mechanism="none", unit=fed.unit, book=None, steps=server.round)
    else:
        privacy = privacy_section(
            mechanism="dpfedavg",
            unit=fed.unit,
            book=book,
            steps=server.round,
            noise_multiplier=dp.noise_multiplier,
            sample_rate=fed.sample_rate,
            clip_norm=dp.clip_norm,
            target_epsilon=cfg.privacy.target_epsilon,
            noise_source=cfg.privacy.noise_source,
            clipping=dp.clipping,
            clipping_site=dp.clipping_site,
            final_clip_norm=server.clip_norm,
            count_noise_multiplier=dp.count_noise_multiplier,
            denominator="fixed (q·N)",
            **_adaptive_noise(dp),
            stop_rule=dp.stop_at_epsilon is not None,
        )
    if secagg is not None:  # what the server saw: only each round's sum (sandbox.federated.flower_secagg)
        privacy = {**privacy, "secure_aggregation": secagg}
    took_part = np.flatnonzero(server.participation > 0)
    return Outcome(
        model=model,
        curve=curve.points,
        privacy=privacy,
        status=server.status,
        trained_users=partition.users_of(took_part, data.corpus, data.train),
        engine=fed.engine,
        data={
            "n_clients": len(partition),
            "client_unit": fed.unit,
            **({"extra_clients": server.extra_clients} if server.extra_clients else {}),
        },
        observations={o.name: o.observations() for o in observers},
        timing={
            "training_seconds": round(seconds, 2),
            "seconds_per_round": round(seconds / max(1, server.round), 4),
            "eval_seconds": round(curve.eval_seconds, 2),
            # the rounds alone: without the held-out evaluations (every federation.eval_every rounds)
            "round_seconds": round((seconds - curve.eval_seconds) / max(1, server.round), 4),
            **engine_timing,
        },
    )
