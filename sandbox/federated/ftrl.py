"""User-level DP-FTRL with tree aggregation and restarts: federated training without client sampling.

Kairouz et al. 2021, "Practical and Private (Deep) Learning without Sampling or Shuffling"
(arXiv 2103.00039), the "tree restart" variant. Production devices check in when idle and
charging, so nobody can promise that each client joins a round independently with probability q
(the Poisson sampling DP-FedAvg's accountant assumes). DP-FTRL needs no sampling, only a
participation rule: the population is split into epochs of k rounds of m clients, within an
epoch each client takes part in at most one round, and the tree restarts at every epoch boundary.

Per round t of a tree (``DPFTRLServer``, a ``FederatedServer``, so every engine runs it):

* each client's update Δ is clipped to C (user level) and the clipped updates are summed: g_t;
* the running prefix sum S_t = g_1 + … + g_t of the tree gets tree-aggregation noise N_t
  (``TreeNoise``): every node of the binary tree over the rounds carries fresh N(0, (z·C)²), and
  N_t is the sum of the nodes of t's binary decomposition (popcount(t) of them), so the server
  holds at most ⌊log₂ k⌋ + 1 node vectors;
* the model is θ_t = θ₀ + η · (S_t + N_t) / m (FTRL in its closed form; m fixed, η =
  ``federation.server_lr``), or with ``federation.server_optimizer=fedavgm`` the momentum variant
  DP-FTRLM: μ_t = ρ·μ_{t−1} + (S_t + N_t)/m, θ_t = θ₀ + η·μ_t (ρ = ``federation.server_momentum``;
  without noise and restarts this is exactly SGD with heavy-ball momentum on the mean updates).

At a restart θ₀ becomes the current model and S, μ and the tree start again (the reference code's
restart, which releases each tree's output and post-processes it). With z = 0 and no momentum the
model is FedAvg with server SGD on the clipped updates over m: the same model.

Privacy: each tree is one ``SingleEpochTreeAggregationDpEvent`` (dp-accounting), and the trees of a
run compose (``sandbox.privacy.tree``). That holds only if no client is in two rounds of one tree,
so the server *enforces* it: it refuses a schedule that plans a client twice in one tree and an
update from a client that is not in the round's plan or already delivered (``ParticipationError``),
and it counts participations per tree for the record.

The schedule is not secret: the guarantee does not rest on sampling, so the order (``shuffled``: a
fresh permutation every epoch; ``cyclic``: the same order every epoch) is drawn from the server's
seeded generator, and clients not in the first k·m of an epoch's order sit that epoch out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sandbox.config.schema import FederationConfig
from sandbox.federated.aggregate import Update, add_delta, clip_update, gaussian_noise
from sandbox.federated.observe import RoundObserver
from sandbox.federated.server import FederatedServer, RoundPlan, client_seeds
from sandbox.privacy import PrivacyBook

PARTICIPATION_RULE = "each client takes part in at most one round of every k rounds; the tree restarts every k rounds"


class ParticipationError(RuntimeError):
    """A schedule or a client broke DP-FTRL's participation rule (at most once per tree)."""


class TreeNoise:
    """Tree-aggregation noise of one tree's prefix sums (TF-Privacy's ``TreeAggregator``).

    Leaf t (1-based) closes the dyadic node of level ℓ = (trailing zeros of t), which covers the
    2^ℓ leaves ending at t; its children at lower levels are no longer needed. The nodes kept are
    those of t's binary decomposition, one per set bit, each with fresh N(0, std²) noise; the
    prefix noise at t is their sum, of variance popcount(t)·std². ``std`` = z·C."""

    def __init__(self, *, size: int, std: float, generator: torch.Generator):
        self.size, self.std, self.generator = int(size), float(std), generator
        self.step = 0
        self._nodes: list[tuple[int, torch.Tensor]] = []  # (level, noise), highest level first

    def next(self) -> torch.Tensor:
        """Advance one leaf; the prefix noise at the new step (a new tensor)."""
        self.step += 1
        level = (self.step & -self.step).bit_length() - 1
        while self._nodes and self._nodes[-1][0] < level:
            self._nodes.pop()
        self._nodes.append((level, self._draw()))
        return self.prefix()

    def prefix(self) -> torch.Tensor:
        total = torch.zeros(self.size)
        for _, node in self._nodes:
            total.add_(node)
        return total

    @property
    def nodes(self) -> int:
        """Node vectors held now (at most ⌊log₂ step⌋ + 1)."""
        return len(self._nodes)

    def restart(self) -> None:
        self.step, self._nodes = 0, []

    def _draw(self) -> torch.Tensor:
        if self.std == 0:  # z = 0: plain FTRL (tests), no draw
            return torch.zeros(self.size)
        return gaussian_noise((self.size,), std=self.std, generator=self.generator)


class ParticipationSchedule:
    """Round r's clients: epochs of k rounds of m distinct clients from one order of the population."""

    def __init__(
        self, *, n_clients: int, clients_per_round: int, rounds_per_epoch: int, order: str, rng: np.random.Generator
    ):
        if clients_per_round * rounds_per_epoch > n_clients:
            raise ParticipationError(
                f"{rounds_per_epoch} rounds × {clients_per_round} clients > {n_clients} clients: "
                "some client would take part twice in one epoch"
            )
        if order not in ("shuffled", "cyclic"):
            raise ValueError(f"order must be 'shuffled' or 'cyclic', got {order!r}")
        self.n, self.m, self.k, self.order, self.rng = n_clients, clients_per_round, rounds_per_epoch, order, rng
        self._epoch, self._permutation = -1, np.arange(n_clients)

    def __call__(self, round_: int) -> np.ndarray:
        epoch, j = divmod(round_ - 1, self.k)
        if epoch != self._epoch:
            self._epoch = epoch
            if self.order == "shuffled" or epoch == 0:
                self._permutation = self.rng.permutation(self.n)
        return np.sort(self._permutation[j * self.m : (j + 1) * self.m])


@dataclass(frozen=True)
class DPFTRLSettings:
    """DP-FTRL as planned (``sandbox.privacy.plan.plan_dpftrl``)."""

    noise_multiplier: float  # z: noise std per tree node over C
    clip_norm: float  # C
    clients_per_round: int  # m, the fixed denominator
    rounds_per_epoch: int  # k, rounds per tree
    participation: str = "shuffled"  # shuffled | cyclic
    momentum: float = 0.0  # ρ of DP-FTRLM (0: plain FTRL)


class DPFTRLServer(FederatedServer):
    """``FederatedServer`` whose round is DP-FTRL's (module docstring); planning, receiving and the
    round loop are the engines' usual calls, so the in-process and Flower engines run it unchanged.

    ``schedule(round) -> clients`` may replace the default ``ParticipationSchedule`` (tests, or a
    deployment's own check-in order); whatever it returns is checked against the rule."""

    def __init__(
        self,
        *,
        params: torch.Tensor,
        n_clients: int,
        cfg: FederationConfig,
        ftrl: DPFTRLSettings,
        book: PrivacyBook,
        seed: int,
        noise_source: str = "secure",
        observers: tuple[RoundObserver, ...] = (),
        schedule: Callable[[int], np.ndarray] | None = None,
    ):
        if any(int(o.extra_clients) for o in observers):
            raise ValueError("DP-FTRL has no Poisson sampling for an observer's extra (canary) clients")
        super().__init__(
            params=params,
            n_clients=n_clients,
            cfg=cfg,
            dp=None,
            book=None,
            seed=seed,
            noise_source=noise_source,
            observers=observers,
        )
        if book is None:
            raise ValueError("DP-FTRL needs a PrivacyBook")
        self.book, self.ftrl, self.clip_norm = book, ftrl, ftrl.clip_norm
        self.schedule = schedule or ParticipationSchedule(
            n_clients=n_clients,
            clients_per_round=ftrl.clients_per_round,
            rounds_per_epoch=ftrl.rounds_per_epoch,
            order=ftrl.participation,
            rng=self.sampling_rng,
        )
        size = self.params.numel()
        self.tree = TreeNoise(size=size, std=ftrl.noise_multiplier * ftrl.clip_norm, generator=self.noise)
        self.tree_participation = np.zeros(n_clients, dtype=np.int64)  # rounds of the current tree per client
        self.max_participations_per_tree = 0  # over every tree that ran, from the counts above
        self.trees = 0
        self.max_tree_nodes = 0
        self._base = self.params.clone()
        self._prefix = torch.zeros(size)
        self._momentum = torch.zeros(size)
        self._last_mean = torch.zeros(size)
        self._pending: set[int] = set()

    # -- planning ---------------------------------------------------------------------------
    def next_round(self) -> RoundPlan | None:
        if self.round >= self.cfg.rounds:
            return None
        self.round += 1
        self._new_tree = (self.round - 1) % self.ftrl.rounds_per_epoch == 0
        if self._new_tree:
            self._restart()
        clients = np.asarray(self.schedule(self.round), dtype=np.int64)
        self._check_plan(clients)
        seeds = client_seeds(self.client_entropy, self.round, clients)
        self._reset_sums()
        self._pending = {int(c) for c in clients}
        self.participation[clients] += 1
        self.tree_participation[clients] += 1
        self.max_participations_per_tree = max(self.max_participations_per_tree, int(self.tree_participation.max()))
        self._plan = RoundPlan(round=self.round, clients=clients, client_seeds=seeds, clip_norm=self.clip_norm)
        for observer in self.observers:
            observer.on_round_start(self._plan)
        return self._plan

    def _check_plan(self, clients: np.ndarray) -> None:
        where = f"round {self.round} (tree {self.trees}, rounds {self.ftrl.rounds_per_epoch} per tree)"
        if len(np.unique(clients)) != len(clients):
            raise ParticipationError(f"{where}: the schedule lists a client twice in one round")
        if len(clients) > self.ftrl.clients_per_round:
            raise ParticipationError(
                f"{where}: {len(clients)} clients planned, more than clients_per_round = {self.ftrl.clients_per_round}"
            )
        if len(clients) and (clients.min() < 0 or clients.max() >= self.n_clients):
            raise ParticipationError(f"{where}: the schedule names a client outside 0..{self.n_clients - 1}")
        again = clients[self.tree_participation[clients] > 0]
        if len(again):
            raise ParticipationError(
                f"{where}: client(s) {again[:5].tolist()} already took part in this tree: {PARTICIPATION_RULE} "
                "(the accountant covers nothing else), so the round is refused"
            )

    def _restart(self) -> None:
        """A new tree: θ₀ ← the current model; prefix sum, momentum, node noise and counts start again."""
        self.trees += 1
        self._base = self.params.clone()
        self._prefix.zero_()
        self._momentum.zero_()
        self._last_mean.zero_()
        self.tree.restart()
        self.tree_participation[:] = 0

    # -- aggregation ------------------------------------------------------------------------
    def _admit(self, clients) -> None:
        for client in clients:
            if client not in self._pending:
                raise ParticipationError(
                    f"round {self.round}: an update from client {client}, which is not in the round's plan or has "
                    f"already delivered one: {PARTICIPATION_RULE}, so it is refused"
                )
            self._pending.discard(client)

    def receive(self, update: Update, *, client: int | None = None) -> None:
        if client is None:
            raise ParticipationError("DP-FTRL needs each update's client to enforce the participation rule")
        self._admit([int(client)])
        super().receive(update, client=client)

    def receive_sum(
        self, total: torch.Tensor, *, clients: np.ndarray, weight: float, loss_sum: float, n_unclipped: int
    ) -> None:
        """A secure-aggregation sum of client-clipped updates (the plan's ``clip_norm`` is C)."""
        self._admit([int(c) for c in clients])
        super().receive_sum(total, clients=clients, weight=weight, loss_sum=loss_sum, n_unclipped=n_unclipped)

    def _fold(self, update: Update) -> None:
        self._n_received += 1
        self._loss += update.loss
        delta, unclipped = clip_update(update.delta, self.clip_norm)  # no-op if the client clipped
        add_delta(self._sum, delta)
        self._n_unclipped += int(update.unclipped and unclipped)

    def finish_round(self) -> dict:
        """Prefix sum + tree noise, over m; the FTRL step from the tree's θ₀; the round in the book."""
        f = self.ftrl
        self._prefix.add_(self._sum)
        noisy = (self._prefix + self.tree.next()) / f.clients_per_round
        self.max_tree_nodes = max(self.max_tree_nodes, self.tree.nodes)
        if f.momentum:
            self._momentum.mul_(f.momentum).add_(noisy)
            direction = self._momentum
        else:
            direction = noisy
        self.params = self._base + self.cfg.server_lr * direction
        mean, self._last_mean = noisy - self._last_mean, noisy  # this round's noisy mean update
        self.book.record_tree_round(noise_multiplier=f.noise_multiplier, new_tree=self._new_tree)
        for observer in self.observers:
            observer.on_round_end(self.round, mean, self.params)
        return {
            "round": self.round,
            "clients": self._n_received,
            "clip_norm": self.clip_norm,
            "epsilon": self.book.epsilon(),
            "train_loss": self._loss / self._n_received if self._n_received else None,
        }

    def participation_record(self) -> dict:
        """The rule, its parameters and what the server counted (the record's ``privacy.participation``)."""
        if self.max_participations_per_tree > 1:  # next_round refuses it first; never record it as passed
            raise ParticipationError(f"a client took part {self.max_participations_per_tree} times in one tree")
        return {
            "rule": PARTICIPATION_RULE,
            "rounds_per_epoch": self.ftrl.rounds_per_epoch,
            "clients_per_round": self.ftrl.clients_per_round,
            "order": self.ftrl.participation,
            "trees": self.trees,
            "restarts": max(0, self.trees - 1),
            "restart_every": self.ftrl.rounds_per_epoch,
            "max_participations_per_tree": self.max_participations_per_tree,
            "check": "passed: the server's per-tree participation counts never exceeded 1",
            "max_tree_nodes_held": self.max_tree_nodes,
        }
