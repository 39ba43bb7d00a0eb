"""Canary clients: extra clients whose update is a fixed random direction (Andrew et al., ICLR 2024).

"One-shot empirical privacy estimation for federated learning" (arXiv 2302.03098) estimates the
ε of one training run from k *canary clients* inserted into the population. Each canary is a
client like any other, Poisson-sampled at the run's rate q every round, but instead of training
it sends a fixed unit vector u_i in the model's flat parameter space (d coordinates), scaled to
the clip norm. k more unit vectors are drawn the same way and never inserted (*null* canaries).
After training, the cosine of each direction with the model's total change (final − initial
parameters) is the test statistic: an inserted canary leaves a trace along its direction, a null
one only the ≈ N(0, 1/d) cosine of a random direction. ``sandbox.audit.canary_clients`` turns
the two samples of cosines into an ε estimate.

What this module does, inside the round loop of every engine (it is a ``RoundObserver``):

* **Directions**: 2k independent uniform unit vectors (k inserted, then k null) in the full flat
  parameter space, each from its own generator seeded from the run's federation seed and its index
  (``random_directions``): canaries are audit instruments, not DP noise, so seeding them costs no
  privacy and makes the audit reproducible from the record (same seed → same canaries, in the run
  and in its control). The k inserted ones are held as one float32 matrix [k, d] for the whole run
  (k = 1,000 on the default emoji model, d ≈ 530k: ≈ 2.1 GB); the k null ones are drawn only at the
  end, ``DIRECTION_CHUNK`` at a time, since a null direction enters no round. Drawing costs about
  2–4 s per 10⁸ coordinates on this 2-core machine (measured), ≈ 20 s per 1,000 directions.
* **Sampling**: each canary joins each round independently with probability q
  (``federation.sample_rate``), from its own generator stream, so the real clients' sampling is
  exactly what it would be without canaries. The server counts the canaries in the population:
  DP-FedAvg's fixed denominator is q·(N + k); the real clients' accounting (q, z, rounds) is
  unchanged.
* **The canary's update** (``extra_updates``), folded into the round's sum like a real client's:
  - DP-FedAvg: ``u_i · C · CANARY_OVERSCALE``, deliberately far longer than any clip norm, so the
    server's own clipping (always applied under DP-FedAvg) cuts it to exactly the clip norm *in
    use this round*, whatever the clipping site (client or server) and schedule (fixed or
    adaptive): a worst-case client, whose contribution has norm equal to the mechanism's
    sensitivity. The observer need not know the adaptive clip norm (under server-site clipping the
    round plan does not carry it). As a clipped client it reports ``unclipped=False``, so under
    adaptive clipping canaries count as clipped in the unclipped-count query (as in the paper's
    code, which scales canaries by 10⁴ "to ensure that the update is clipped"). A canary's
    cosine statistic does not depend on its norm, only on its share of the released sum.
  - FedAvg without DP: ``u_i · C`` (C = ``privacy.clip_norm``, there only the canary's norm),
    weighted by ``n_examples`` = the *mean* real client's example count. FedAvg weights a client by
    its examples, so with the mean a canary's expected share of a round's mean is 1/(clients in the
    round), as under DP-FedAvg's equal weights: the control's canary weighs what the DP run's does.
    (The median would make it lighter: example counts are skewed, the tiny test corpus's median is a
    third of its mean.)
  - ``privacy=client_dpsgd`` is refused: its clients are private by their own local DP-SGD and the
    server adds no noise, so a canary client (which runs no DP-SGD) would be released in the clear
    and its ε says nothing about the real clients' (example-level) guarantee.
* **Statistics** (``observations``): each direction's cosine with the total change (final − initial
  parameters): the *final-model* threat. With ``audit.canary_all_iterates`` the observer also keeps
  every round's released (noisy) mean delta (rounds × d float32: 212 MB for 100 rounds of the default
  emoji model) and, per direction, the largest cosine with any of them: the *all-iterates* threat, an
  adversary who sees every aggregate.
* **Never-sampled canaries** are kept in the inserted sample, as in the paper: the accountant's
  ε is for a client *present in the population* and sampled at rate q, so the statistic must
  not condition on the sampling (dropping them would estimate an un-amplified ε). How many
  rounds each canary took part in is recorded, and how many never did.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from sandbox.config import ConfigError, RunConfig
from sandbox.federated.aggregate import Update, delta_norm
from sandbox.federated.observe import Observer
from sandbox.federated.sampling import poisson_sample_clients

# DP-FedAvg: a canary's update is this many clip norms long, so the server clips it to exactly the
# clip norm in use (fixed or adaptive); Andrew et al.'s code scales by the same 10^4
CANARY_OVERSCALE = 1e4
MIN_CANARIES = 2  # a Gaussian is fitted to the k inserted and the k null cosines: a spread needs ≥ 2
_STREAM = 0xCA9C11E5  # the canaries' own seed stream, apart from every stream the run already draws
DIRECTION_CHUNK = 128  # directions drawn (and multiplied) at once by the statistics: 128·d float32


def check_canary_config(cfg: RunConfig) -> None:
    """Refuse a configuration the canary-client audit cannot measure (a ``ConfigError`` naming the key)."""
    a = cfg.audit
    if cfg.mode != "federated":
        raise ConfigError(
            "audit.attack: audit=canary_clients inserts clients into federated training: add mode=federated"
        )
    if a.canary_clients < MIN_CANARIES:
        raise ConfigError(
            f"audit.canary_clients: must be ≥ {MIN_CANARIES} (a Gaussian is fitted to the inserted and to the "
            f"never-inserted canaries' cosines), got {a.canary_clients}"
        )
    if cfg.privacy.mechanism not in ("none", "dpfedavg"):
        raise ConfigError(
            f"privacy.mechanism: audit=canary_clients audits FedAvg (privacy=none) or DP-FedAvg (privacy=dpfedavg); "
            f"under {cfg.privacy.mechanism} the server adds no noise and a canary client, which runs no local "
            "DP-SGD, would be released in the clear: its ε says nothing of the example-level guarantee"
        )
    if a.control_on == "central":
        raise ConfigError(
            "audit.control_on: audit=canary_clients needs its positive control on the same federated pipeline "
            "(canary clients exist only there): use audit.control_on=same"
        )


def random_directions(indices, d: int, *, seed: int) -> torch.Tensor:
    """[len(indices), d] float32 rows, row j uniform on the unit sphere (a normalised standard Gaussian)
    from its own generator, seeded by (seed, index): direction i is the same whichever others are drawn
    with it, so a round draws only the canaries it sampled and the statistics draw them in chunks."""
    indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    rows = torch.empty(len(indices), int(d), dtype=torch.float32)
    for j, i in enumerate(indices.tolist()):
        state = np.random.SeedSequence([int(seed), _STREAM, 2, int(i)]).generate_state(1)[0]
        torch.randn(int(d), generator=torch.Generator().manual_seed(int(state)), out=rows[j])
    norms = torch.linalg.vector_norm(rows.double(), dim=1, keepdim=True).float()
    return rows.div_(norms)


def cosines(directions: torch.Tensor, vector: torch.Tensor) -> np.ndarray:
    """Cosine of each (unit) row of ``directions`` with ``vector`` (0 for a zero vector), float64."""
    v = vector.detach().to(torch.float32).reshape(-1)
    norm = float(torch.linalg.vector_norm(v.double()))
    if norm == 0.0:
        return np.zeros(directions.shape[0])
    return (directions @ v).double().numpy() / norm


class CanaryClients(Observer):
    """k canary clients inserted into the rounds and k never-inserted directions (module docstring)."""

    name = "canary_clients"

    def __init__(
        self,
        *,
        k: int,
        initial_params: torch.Tensor,
        sample_rate: float,
        clip_norm: float,
        private: bool,
        seed: int,
        example_counts: np.ndarray | None = None,
        all_iterates: bool = False,
    ):
        self.extra_clients = int(k)
        self.k, self.q, self.clip_norm, self.private = int(k), float(sample_rate), float(clip_norm), bool(private)
        self.initial = initial_params.detach().to(torch.float32).reshape(-1).clone()
        self.d = int(self.initial.numel())
        self.seed = int(seed)  # direction i: random_directions([i], d, seed); [0, k) inserted, [k, 2k) null
        self.inserted = self.directions(np.arange(self.k))  # [k, d], held: a round folds in the sampled rows
        self.sampling_rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM, 1]))
        self.all_iterates = bool(all_iterates)
        self.participation = np.zeros(self.k, dtype=np.int64)
        self.rounds = 0
        self._sampled = np.zeros(0, dtype=np.int64)
        self._sampled_round = 0
        self._released: list[torch.Tensor] = []  # every round's released mean delta (all-iterates only)
        self._final = None
        # FedAvg's weight of a canary: the mean real client's example count (given, or the mean over the
        # real updates received so far when the caller has no partition to give)
        if example_counts is not None and len(example_counts):
            self._n_examples, self._n_source = _mean_count(example_counts), "mean of the partition's clients"
        else:
            self._n_examples, self._n_source = None, "mean over the real updates received so far"
        self._seen_counts: list[int] = []
        self._seen_norms: list[float] = []  # the real updates' norms as received (none under secure aggregation)

    # -- the round loop ------------------------------------------------------------------------
    def on_round_start(self, plan) -> None:
        self._sampled = poisson_sample_clients(self.k, sample_rate=self.q, rng=self.sampling_rng)
        self._sampled_round = int(plan.round)
        self.participation[self._sampled] += 1

    def on_update(self, round: int, client: int, update: Update) -> None:
        if self._n_examples is None:
            self._seen_counts.append(int(update.n_examples))
        self._seen_norms.append(delta_norm(update.delta))

    def extra_updates(self, plan) -> Iterable[Update]:
        if int(plan.round) != self._sampled_round:  # the server asks once per round, after on_round_start
            raise RuntimeError(f"canary clients sampled for round {self._sampled_round}, asked for round {plan.round}")
        scale = self.clip_norm * (CANARY_OVERSCALE if self.private else 1.0)
        n = self._weight()
        return [
            Update(delta=self.inserted[i] * scale, n_examples=n, loss=0.0, unclipped=not self.private)
            for i in self._sampled
        ]

    def directions(self, indices) -> torch.Tensor:
        """The unit directions of ``indices`` ([0, k): inserted canaries, [k, 2k): null), drawn afresh."""
        return random_directions(indices, self.d, seed=self.seed)

    def _weight(self) -> int:
        if self._n_examples is not None:
            return self._n_examples
        return _mean_count(self._seen_counts) if self._seen_counts else 1

    def on_round_end(self, round: int, mean_delta: torch.Tensor, params: torch.Tensor) -> None:
        self.rounds = int(round)
        self._final = params
        if self.all_iterates:
            self._released.append(mean_delta.detach().to(torch.float32).reshape(-1).clone())

    def _statistics(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Each direction's cosine with the total change and (all-iterates) its largest cosine with any
        round's released mean delta; the null directions drawn DIRECTION_CHUNK at a time."""
        final = self.initial if self._final is None else self._final
        total = final.reshape(-1).to(torch.float32) - self.initial
        released = torch.stack(self._released) if self._released else None
        if released is not None:
            norms = torch.linalg.vector_norm(released.double(), dim=1)
            scale = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
        cos, max_cos = np.empty(2 * self.k), np.full(2 * self.k, -np.inf) if self.all_iterates else None
        start = 0
        while start < 2 * self.k:  # chunks of the inserted rows, then of the null ones
            stop = min(start + DIRECTION_CHUNK, self.k if start < self.k else 2 * self.k)
            rows = self.inserted[start:stop] if start < self.k else self.directions(np.arange(start, stop))
            cos[start:stop] = cosines(rows, total)
            if max_cos is not None and released is not None:
                max_cos[start:stop] = ((rows @ released.T).double() * scale).max(dim=1).values.numpy()
            start = stop
        return cos, max_cos

    # -- after training ------------------------------------------------------------------------
    def observations(self) -> dict:
        """What the audit needs (no raw data): the final-model cosines of the k inserted and the k null
        directions, optionally the all-iterates maxima, the canaries' participation and the settings."""
        k = self.k
        cos, max_cos = self._statistics()
        out = {
            "k": k,
            "dimension": self.d,
            "clip_norm": self.clip_norm,
            "sample_rate": self.q,
            "rounds": self.rounds,
            "private": self.private,
            "norm": (
                "the clip norm in use each round: the server clips the canary's update "
                f"(C·{CANARY_OVERSCALE:g}) to it, fixed or adaptive"
                if self.private
                else f"C = privacy.clip_norm = {self.clip_norm:g} (no DP: no clipping)"
            ),
            "real_update_norm_median": float(np.median(self._seen_norms)) if self._seen_norms else None,
            "n_examples": self._weight(),
            "n_examples_source": self._n_source if not self.private else "unused: DP-FedAvg weighs clients equally",
            "inserted_cosines": cos[:k].tolist(),
            "null_cosines": cos[k:].tolist(),
            "rounds_sampled": self.participation.tolist(),
            "never_sampled": int((self.participation == 0).sum()),
            "never_sampled_kept": True,
            "statistic": "cosine of each direction with (final − initial parameters)",
        }
        if self.all_iterates:
            out["all_iterates"] = {
                "inserted_max_cosines": max_cos[:k].tolist(),
                "null_max_cosines": max_cos[k:].tolist(),
                "statistic": "largest cosine of each direction with any round's released mean delta",
            }
        return out


def _mean_count(counts) -> int:
    return max(1, int(round(float(np.mean(np.asarray(counts, dtype=np.float64))))))


def make_canary_clients(
    cfg: RunConfig, *, model, n_clients: int, seed: int, example_counts: np.ndarray | None = None
) -> CanaryClients:
    """The canary-client observer of a run: ``audit.canary_clients`` canaries (and as many null
    directions) in the parameter space of ``model`` (its parameters now are the initial ones).

    ``n_clients``: the real clients (N; the canaries make it N + k); ``seed``: the run's federation
    seed; ``example_counts``: the real clients' example counts (FedAvg weighs a canary as their
    mean; without them, the mean over the real updates received so far)."""
    check_canary_config(cfg)
    if n_clients < 1:
        raise ConfigError(f"audit.canary_clients: the run has no real client to audit (n_clients = {n_clients})")
    return CanaryClients(
        k=cfg.audit.canary_clients,
        initial_params=parameters_to_vector(model.parameters()).detach(),
        sample_rate=cfg.federation.sample_rate,
        clip_norm=cfg.privacy.clip_norm,
        private=cfg.privacy.mechanism == "dpfedavg",
        seed=seed,
        # under SecAgg+ FedAvg is a plain mean (no client's size crosses): a canary weighs one client
        example_counts=np.ones(1) if getattr(cfg.federation, "secagg", False) else example_counts,
        all_iterates=cfg.audit.canary_all_iterates,
    )
