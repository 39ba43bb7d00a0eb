"""The server side of federated training, shared by every engine.

``FederatedServer`` owns everything random and everything private on the server:
Poisson client sampling, the per-client seeds it hands out, clipping, the Gaussian
noise, the clip-norm schedule, the server optimizer and the ``PrivacyBook``. An engine
asks it for a round plan, delivers each sampled client's ``Update`` to it, and closes the
round. Because the engines only move data, the same seed gives the same model in all of them
under ``privacy.noise_source=seeded``; with secure noise (the default) they share everything
but the noise draw (``sandbox.privacy.noise``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sandbox.config.schema import FederationConfig
from sandbox.federated.aggregate import (
    Update,
    add_delta,
    clip_update,
    gaussian_noise,
    next_clip_norm,
    noisy_mean,
    update_noise_multiplier,
)
from sandbox.federated.client_dp import LocalDPSGD
from sandbox.federated.observe import RoundObserver
from sandbox.federated.sampling import poisson_sample_clients
from sandbox.privacy import PrivacyBook, SubsampledGaussianEvent, epsilon_for, joint_noise_multiplier
from sandbox.privacy.noise import noise_generator, sampling_rng


@dataclass(frozen=True)
class DPFedAvgSettings:
    """User-level DP-FedAvg, resolved by the caller (σ calibrated if a target ε was given)."""

    noise_multiplier: float  # z: total, as the accountant sees it
    clip_norm: float  # initial C
    clipping: str = "fixed"  # fixed | adaptive (Andrew et al. 2021)
    clipping_site: str = "client"  # client | server
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    count_noise_multiplier: float | None = None  # σ_b for the unclipped-count query (adaptive)
    stop_at_epsilon: float | None = None  # stop before a round would push ε past this


def client_seeds(entropy: int, round_: int, clients: np.ndarray) -> tuple[int, ...]:
    """Each sampled client's local seed for a round (its shuffles): a function of (entropy, round, client) only.

    Client c's seed is the top 32 bits of the c-th output of Philox keyed by (entropy, round), so it
    does not depend on who else was sampled (what one ``SeedSequence([entropy, round, c])`` per
    client gave, at 14 µs a client; this is one vectorized draw of max(clients) + 1 outputs).
    """
    clients = np.asarray(clients, dtype=np.int64)
    if len(clients) == 0:
        return ()
    stream = np.random.Philox(key=(int(entropy) << 64) | int(round_)).random_raw(int(clients.max()) + 1)
    return tuple((stream[clients] >> np.uint64(32)).tolist())


@dataclass(frozen=True)
class RoundPlan:
    round: int  # 1-based
    clients: np.ndarray  # indices of sampled clients
    client_seeds: tuple[int, ...]  # one per sampled client, for its local generator
    clip_norm: float | None  # the clip norm clients use this round (client-side clipping)
    local_dp: LocalDPSGD | None = None  # client-level DP-SGD: every client runs it with these settings


class FederatedServer:
    """Rounds of (Poisson-sample → local updates → clip → noise → average → server step).

    With ``dp`` (DP-FedAvg) the server clips, noises and accounts per client (user level).
    With ``local_dp`` (client-level DP-SGD) the clients are private already: the server takes
    the plain mean of their updates and accounts, per example, for the client that took part
    in the most rounds (no amplification by client sampling is claimed).
    """

    def __init__(
        self,
        *,
        params: torch.Tensor,
        n_clients: int,
        cfg: FederationConfig,
        dp: DPFedAvgSettings | None,
        book: PrivacyBook | None,
        seed: int,
        local_dp: LocalDPSGD | None = None,
        noise_source: str = "secure",
        observers: tuple[RoundObserver, ...] = (),
    ):
        if dp is not None and local_dp is not None:
            raise ValueError("DP-FedAvg and client-level DP-SGD are alternatives, not both")
        if (dp is None and local_dp is None) != (book is None):
            raise ValueError("a private run needs a PrivacyBook and a non-private run must not have one")
        self.local_dp = local_dp
        self.observers = tuple(observers)
        # clients the observers add (canary clients): sampled at rate q like real ones, counted in q·N's N
        self.extra_clients = sum(int(o.extra_clients) for o in self.observers)
        self.participation = np.zeros(n_clients, dtype=np.int64)  # rounds each client took part in
        sampling, noise, clients = np.random.SeedSequence([seed, 0xFEDA]).spawn(3)
        self.params = params.detach().clone()
        self.n_clients, self.cfg, self.dp, self.book = n_clients, cfg, dp, book
        # a DP mechanism's client sampling is secret under secure noise (amplification by sampling
        # assumes nobody can replay the sample); FedAvg without DP keeps it seeded
        self.sampling_rng = sampling_rng(noise_source if (dp or local_dp) else "seeded", sampling)
        # DP-FedAvg's noise (the update sum's and adaptive clipping's count): a secret OS-CSPRNG state by
        # default; replayed from ``seed`` only under noise_source="seeded" (sandbox.privacy.noise)
        self.noise = noise_generator(noise_source, seeded_from=int(noise.generate_state(1)[0]))
        self.client_entropy = int(clients.generate_state(1)[0])
        self.clip_norm = dp.clip_norm if dp else None
        self.round = 0
        self.status = "completed"
        self._global = torch.nn.Parameter(self.params.clone())
        self._optimizer = server_optimizer(self._global, cfg)
        self._reset_sums()

    # -- planning ---------------------------------------------------------------------------
    def next_round(self) -> RoundPlan | None:
        """The next round's plan, or None when the rounds are done or the budget would be exceeded."""
        if self.round >= self.cfg.rounds:
            return None
        if self._would_exceed_budget():
            self.status = "stopped_budget"
            return None
        self.round += 1
        clients = poisson_sample_clients(self.n_clients, sample_rate=self.cfg.sample_rate, rng=self.sampling_rng)
        seeds = client_seeds(self.client_entropy, self.round, clients)
        site_clip = self.clip_norm if self.dp and self.dp.clipping_site == "client" else None
        self._reset_sums()
        self._worst_before = int(self.participation.max(initial=0))
        self.participation[clients] += 1
        self._plan = RoundPlan(
            round=self.round, clients=clients, client_seeds=seeds, clip_norm=site_clip, local_dp=self.local_dp
        )
        for observer in self.observers:
            observer.on_round_start(self._plan)
        return self._plan

    def _would_exceed_budget(self) -> bool:
        if self.dp is None or self.dp.stop_at_epsilon is None:
            return False
        eps = epsilon_for(
            events=[*self.book.events, self._round_event()], delta=self.book.delta, accountant=self.book.accountant
        )
        return eps > self.dp.stop_at_epsilon

    # -- aggregation ------------------------------------------------------------------------
    def _reset_sums(self) -> None:
        self._sum = torch.zeros_like(self.params)
        self._weight = 0.0
        self._n_unclipped = 0
        self._n_received = 0
        self._loss = 0.0

    def receive(self, update: Update, *, client: int | None = None) -> None:
        """Fold one client's update into the round's running sum (memory: one vector).

        ``client``: its index in the partition, for the observers (``on_update`` sees the update as
        received, before any server-side clipping)."""
        for observer in self.observers:
            observer.on_update(self.round, -1 if client is None else int(client), update)
        self._fold(update)

    def receive_sum(
        self, total: torch.Tensor, *, clients: np.ndarray, weight: float, loss_sum: float, n_unclipped: int
    ) -> None:
        """Fold a sum over ``clients`` the server received instead of their updates (secure aggregation).

        ``total``: the sum of their (client-clipped, under DP-FedAvg) deltas, or of n_examples · delta
        under FedAvg, whose ``weight`` is then the sum of their example counts; ``n_unclipped``: how many
        of them did not clip (adaptive clipping's count)."""
        if len(clients):  # a round whose only client's update SecAgg+ dropped delivers no sum
            for observer in self.observers:
                observer.on_aggregate(self.round, np.asarray(clients), total)
        self._n_received += len(clients)
        self._loss += loss_sum
        self._sum.add_(total)
        self._weight += weight
        self._n_unclipped += int(n_unclipped)

    def _fold(self, update: Update) -> None:
        self._n_received += 1
        self._loss += update.loss
        if self.local_dp is not None:  # client-level DP-SGD: a plain mean (a client's size is private)
            add_delta(self._sum, update.delta)
            self._weight += 1.0
            return
        if self.dp is None:  # FedAvg: weighted by the client's example count
            add_delta(self._sum, update.delta, weight=update.n_examples)
            self._weight += update.n_examples
            return
        delta, unclipped = clip_update(update.delta, self.clip_norm)  # no-op if the client clipped
        add_delta(self._sum, delta)
        self._n_unclipped += int(update.unclipped and unclipped)

    def finish_round(self) -> dict:
        """Noise, average, server step, clip-norm update, privacy record; returns the round's summary."""
        n_real, loss_real = self._n_received, self._loss
        for observer in self.observers:  # the observers' own clients (canaries): summed like real ones
            for update in observer.extra_updates(self._plan):
                self._fold(update)
        self._n_received, self._loss = n_real, loss_real  # counts and losses are the real clients'
        clip_used = self.clip_norm
        if self.dp is None:
            mean = self._sum / self._weight if self._weight else torch.zeros_like(self._sum)
            self._record_local_dp()
        else:
            mean = self._dp_mean()
        self._server_step(mean)
        for observer in self.observers:
            observer.on_round_end(self.round, mean, self.params)
        return {
            "round": self.round,
            "clients": self._n_received,
            "clip_norm": clip_used,
            "epsilon": self.book.epsilon() if self.book else None,
            "train_loss": self._loss / self._n_received if self._n_received else None,
        }

    def _record_local_dp(self) -> None:
        """Client-level DP-SGD: the book follows the client with the most rounds (one more round → its steps)."""
        if self.local_dp is not None and int(self.participation.max(initial=0)) > self._worst_before:
            ld = self.local_dp
            self.book.record(noise_multiplier=ld.noise_multiplier, sample_rate=ld.sample_rate, steps=ld.steps)

    def _round_event(self) -> SubsampledGaussianEvent:
        """What one DP-FedAvg round releases, as the accountant sees it.

        Fixed clipping: the clipped-update sum with noise z·C. Adaptive clipping: two Gaussian
        queries on the same Poisson sample, the update sum (z_Δ·C) and the uncentred unclipped
        count (σ_b), recorded as one event with both components and their joint multiplier.
        """
        dp, q = self.dp, self.cfg.sample_rate
        if dp.clipping != "adaptive":
            return SubsampledGaussianEvent(noise_multiplier=dp.noise_multiplier, sample_rate=q, steps=1)
        components = (
            ("update", update_noise_multiplier(dp.noise_multiplier, dp.count_noise_multiplier)),
            ("count", float(dp.count_noise_multiplier)),
        )
        return SubsampledGaussianEvent(
            noise_multiplier=joint_noise_multiplier(z for _, z in components),
            sample_rate=q,
            steps=1,
            components=components,
        )

    def _dp_mean(self) -> torch.Tensor:
        dp, expected = self.dp, self.cfg.sample_rate * (self.n_clients + self.extra_clients)  # fixed q·N
        event = self._round_event()
        noise = dict(event.components) or {"update": event.noise_multiplier}
        mean = noisy_mean(
            self._sum, noise_std=noise["update"] * self.clip_norm, denominator=expected, generator=self.noise
        )
        if dp.clipping == "adaptive":
            count_noise = float(gaussian_noise((1,), std=noise["count"], generator=self.noise))
            self.clip_norm = next_clip_norm(
                self.clip_norm,
                unclipped_fraction=(self._n_unclipped + count_noise) / expected,
                target_quantile=dp.target_quantile,
                learning_rate=dp.clip_lr,
            )
        self.book.record(
            noise_multiplier=event.noise_multiplier, sample_rate=event.sample_rate, components=event.components
        )
        return mean

    def _server_step(self, mean_delta: torch.Tensor) -> None:
        """Apply the averaged delta with a torch optimizer on the pseudo-gradient −delta."""
        self._global.grad = -mean_delta
        self._optimizer.step()
        self.params = self._global.detach().clone()


def server_optimizer(params: torch.nn.Parameter, cfg: FederationConfig) -> torch.optim.Optimizer:
    """FedAvg = SGD(server_lr); FedAvgM = SGD with momentum; FedAdam (Reddi et al. 2021) = Adam with eps τ."""
    if cfg.server_optimizer == "fedavg":
        return torch.optim.SGD([params], lr=cfg.server_lr)
    if cfg.server_optimizer == "fedavgm":
        return torch.optim.SGD([params], lr=cfg.server_lr, momentum=cfg.server_momentum)
    if cfg.server_optimizer == "fedadam":
        return torch.optim.Adam([params], lr=cfg.server_lr, betas=(0.9, 0.99), eps=cfg.server_tau)
    raise ValueError(f"federation.server_optimizer must be fedavg, fedavgm or fedadam, got {cfg.server_optimizer!r}")
