"""The configuration schemas: every Hydra group's frozen dataclass, the run config and its choices.

The bottom layer: nothing here imports another ``sandbox`` module. Field names are the Hydra keys;
``sandbox.config.resolve`` turns a composed ``DictConfig`` into a validated :class:`RunConfig`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


# -- choices ---------------------------------------------------------------------------------------
# OmegaConf types Enum fields (not Literal): a value outside the Enum is refused when the config is
# composed. StrEnum members are str (``cfg.privacy.mechanism == "dpsgd"``, dict keys, JSON) and
# print as their value; member names equal their values, which is what OmegaConf matches.
class Mode(enum.StrEnum):
    central = "central"
    federated = "federated"


class Mechanism(enum.StrEnum):
    none = "none"
    dpsgd = "dpsgd"
    dpfedavg = "dpfedavg"
    dpftrl = "dpftrl"
    client_dpsgd = "client_dpsgd"


class NoiseSource(enum.StrEnum):
    secure = "secure"
    seeded = "seeded"


class Accountant(enum.StrEnum):
    rdp = "rdp"
    prv = "prv"
    gdp = "gdp"


class Clipping(enum.StrEnum):
    fixed = "fixed"
    adaptive = "adaptive"


class Engine(enum.StrEnum):
    inprocess = "inprocess"
    flower = "flower"
    deployment = "deployment"  # only inside a Flower ServerApp


class ClientUnit(enum.StrEnum):
    user = "user"
    workspace = "workspace"


class ServerOptimizer(enum.StrEnum):
    fedavg = "fedavg"
    fedavgm = "fedavgm"
    fedadam = "fedadam"


class Attack(enum.StrEnum):
    none = "none"
    loss = "loss"
    lira = "lira"
    rmia = "rmia"
    canary = "canary"
    suggestions = "suggestions"
    canary_clients = "canary_clients"  # federated: canary clients and the one-run ε estimate (Andrew et al. 2024)
    server_view = "server_view"  # federated: what a curious server learns from the updates it receives


class AuditLevel(enum.StrEnum):
    user = "user"
    example = "example"


class Threat(enum.StrEnum):
    whitebox = "whitebox"
    scores = "scores"
    topk = "topk"


class OnExceed(enum.StrEnum):
    refuse = "refuse"
    warn = "warn"


class TrackingBackend(enum.StrEnum):
    none = "none"
    tensorboard = "tensorboard"
    mlflow = "mlflow"


def _values(choice: type[enum.Enum]) -> tuple[str, ...]:
    return tuple(member.value for member in choice)


ACCOUNTANTS = _values(Accountant)
NOISE_SOURCES = _values(NoiseSource)  # sandbox.privacy.noise
RECOMMEND_TASKS = ("jobs", "channels")
ATTACKS = _values(Attack)


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key."""


def _require(config, name: str, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"{type(config).__name__}.{name}={getattr(config, name)!r}: {rule}")


@dataclass(frozen=True)
class TrainConfig:
    """Hydra group ``train/``."""

    # train=default: non-private training, tuned on the default corpus (more epochs overfit);
    # train/dpsgd.yaml (chosen by privacy=dpsgd) overrides epochs, batch_size and lr
    epochs: float = 8.0
    batch_size: int = 1024  # expected batch size under Poisson sampling (DP-SGD)
    lr: float = 0.005
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class LocalConfig:
    """Client training (Hydra keys ``federation.local_*``)."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 0.1


@dataclass(frozen=True)
class FederationConfig:
    """Hydra group ``federation/``."""

    # the defaults are federation=cross_device (one client = one user); cross_silo.yaml overrides
    engine: Engine = Engine.inprocess  # inprocess | flower (simulation) | deployment (inside a Flower ServerApp)
    unit: ClientUnit = ClientUnit.user  # user (cross-device) | workspace (cross-silo): what one client is
    rounds: int = 100
    sample_rate: float = 0.05  # Poisson: each client joins a round with probability q
    local_epochs: int = 1
    local_batch_size: int = 16
    local_lr: float = 1.0
    server_optimizer: ServerOptimizer = ServerOptimizer.fedavgm  # fedavg | fedavgm | fedadam
    server_lr: float = 1.0
    server_momentum: float = 0.9  # fedavgm only
    server_tau: float = 1e-3  # fedadam: adaptivity τ (Adam's eps); larger damps noise-only coordinates
    eval_every: int = 5  # held-out-user metrics every k rounds (and after the last)
    client_batch: int = 64  # inprocess: clients trained together per batched step (0 = one at a time)
    # secure aggregation (Flower's SecAgg+; engines flower | deployment): the server obtains only the sum
    secagg: bool = False
    secagg_num_shares: float = 3  # ≥ 2: shares (neighbours incl. itself) per client; ≤ 1: fraction of the sample
    secagg_reconstruction_threshold: float = 2  # ≥ 2: shares needed to unmask; ≤ 1: fraction of the shares
    # every coordinate is clipped to ±this before quantization; None: the round's clip norm C under
    # DP-FedAvg (exact: ‖Δ‖₂ ≤ C bounds every coordinate); required without DP-FedAvg
    secagg_clipping_range: float | None = None
    secagg_quantization_range: int = 4194304  # 2**22 levels over [-range, range] (Flower's default)
    secagg_modulus_range: int = 4294967296  # 2**32: masks and sums are mod this (Flower's default)

    @property
    def local(self) -> LocalConfig:
        return LocalConfig(epochs=self.local_epochs, batch_size=self.local_batch_size, lr=self.local_lr)


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic corpus; field names are the Hydra keys of sandbox/conf/data/synthetic.yaml."""

    seed: int = 0
    n_workspaces: int = 200
    n_users: int = 6000
    n_emoji: int = 40
    messages_per_user_median: float = 12.0  # lognormal, clipped to [1, max_messages_per_user]
    messages_per_user_sigma: float = 1.4
    max_messages_per_user: int = 5000
    reaction_rate: float = 0.7  # share of messages with at least one reaction
    keyword_rate: float = 0.65  # share of messages holding keywords of their primary reaction
    workspace_opt_out_rate: float = 0.05
    user_opt_out_rate: float = 0.03
    n_canaries: int = 10
    canary_users: int = 1  # k: users per canary (distinct across canaries)
    canary_repeats: int = 10  # r: copies per host user
    n_fresh_canaries: int = 100
    canary_format: str = "spaced"  # spaced: "0 0 4 8 1 9" | compact: "004819" (one word)
    canary_inclusion: str = "fixed"  # fixed: plant all n_canaries | bernoulli: plant each with probability 1/2
    start_timestamp: int = 1_700_000_000
    activity_days: float = 90.0  # typical span of one user's messages
    workspace_size_sigma: float = 1.0  # lognormal spread of users per workspace
    n_topics: int = 40
    words_per_topic: int = 60
    workspace_topic_concentration: float = 0.3  # Dirichlet α per topic; small = few topics
    user_topic_concentration: float = 20.0  # user mix ~ Dirichlet(c * workspace mix)
    emoji_zipf_exponent: float = 0.7  # overall popularity ∝ rank^-s; sets the top-5 baseline
    workspace_emoji_concentration: float = 20.0  # workspace pref ~ Dirichlet(c * popularity)
    user_emoji_concentration: float = 20.0  # user pref ~ Dirichlet(c * workspace pref)
    words_per_message: float = 7.0  # mean topic + filler words per message (at least 1)
    filler_rate: float = 0.35  # share of those words that are everyday filler
    distractor_rate: float = 0.1  # share of messages with a keyword of another emoji
    extra_reaction_rate: float = 0.3  # chance of a 2nd reaction (squared: of a 3rd)
    topic_channels_per_workspace: int = 3
    topic_channel_rate: float = 0.7  # chance a message on a channel topic goes to its channel
    channel_discovery: bool = False  # a user finds each topic channel at a random point of their activity;
    #                                  before it, their messages on the topic go to #general/#random
    seeking_rate: float = 0.0  # share of users secretly looking for a new job (0: none, no #careers channel)
    seeking_message_rate: float = 0.15  # share of a seeking user's messages that say so (at least one)
    hiring_rate: float = 0.05  # chance that a user posts an opening in #careers (one message)
    # Personal content (sandbox/data/personal.py, data=personal); every rate 0 = off, the corpus as without it
    personal_rate: float = 0.0  # share of messages mentioning one of their user's contacts, customers, projects
    contacts_per_user: int = 8  # people a user talks about (first or full names, Faker en_US)
    customers_per_user: int = 3  # customer companies a user talks about (Faker company names)
    projects_per_user: int = 2  # project code names a user talks about (colour + noun)
    personal_workspace_share: float = 0.7  # chance a contact/customer/project comes from the workspace's pool
    personal_zipf_exponent: float = 1.0  # a user's mentions ∝ rank^-s over their own list (random order)
    contact_detail_rate: float = 0.0  # share of messages carrying the user's own e-mail or phone number
    everyday_rate: float = 0.0  # share of filler words drawn from English word frequencies (wordfreq) instead
    everyday_words: int = 5000  # the top words of wordfreq's English list the everyday filler draws from
    layout: str = "auto"  # columnar: integer columns drawn in chunks of users (sandbox.data.scale) | strings |
    #                       auto: columnar from 50,000 users (the same corpus below; docs/data.md)

    def __post_init__(self) -> None:
        positive = (
            "n_workspaces",
            "n_users",
            "n_emoji",
            "messages_per_user_median",
            "max_messages_per_user",
            "n_topics",
            "words_per_topic",
            "activity_days",
            "workspace_topic_concentration",
            "user_topic_concentration",
            "workspace_emoji_concentration",
            "user_emoji_concentration",
            "words_per_message",
            "canary_users",
            "canary_repeats",
        )
        rates = (
            "reaction_rate",
            "keyword_rate",
            "workspace_opt_out_rate",
            "user_opt_out_rate",
            "filler_rate",
            "distractor_rate",
            "extra_reaction_rate",
            "topic_channel_rate",
            "seeking_rate",
            "seeking_message_rate",
            "hiring_rate",
            "personal_rate",
            "personal_workspace_share",
            "contact_detail_rate",
            "everyday_rate",
        )
        non_negative = (
            "seed",
            "n_canaries",
            "n_fresh_canaries",
            "messages_per_user_sigma",
            "workspace_size_sigma",
            "emoji_zipf_exponent",
            "topic_channels_per_workspace",
            "start_timestamp",
        )
        for name in positive:
            _require(self, name, getattr(self, name) > 0, "must be > 0")
        for name in rates:
            _require(self, name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]")
        for name in non_negative:
            _require(self, name, getattr(self, name) >= 0, "must be >= 0")
        _require(self, "n_users", self.n_users >= self.n_workspaces, "must be >= n_workspaces")
        _require(self, "n_emoji", self.n_emoji >= 2, "must be >= 2")
        _require(self, "layout", self.layout in ("auto", "columnar", "strings"), "must be auto, columnar or strings")
        _require(self, "canary_format", self.canary_format in ("spaced", "compact"), "must be spaced or compact")
        _require(
            self, "canary_inclusion", self.canary_inclusion in ("fixed", "bernoulli"), "must be fixed or bernoulli"
        )
        for name in ("contacts_per_user", "customers_per_user", "projects_per_user"):
            _require(self, name, 0 <= getattr(self, name) <= 100, "must be in [0, 100]")
        _require(
            self,
            "contacts_per_user",
            self.personal_rate == 0 or self.contacts_per_user + self.customers_per_user + self.projects_per_user > 0,
            "contacts_per_user + customers_per_user + projects_per_user must be > 0 when personal_rate > 0",
        )
        _require(self, "personal_zipf_exponent", self.personal_zipf_exponent >= 0, "must be >= 0")
        _require(self, "everyday_words", 1 <= self.everyday_words <= 100_000, "must be in [1, 100000]")


@dataclass(frozen=True)
class JobsConfig:
    """Knobs of the job-suggestion corpus."""

    seed: int = 0
    n_members: int = 3000
    n_postings: int = 600
    messages_per_member: float = 6.0  # median, lognormal, clipped to [1, max_messages_per_member]
    messages_sigma: float = 1.0
    max_messages_per_member: int = 500
    interactions_per_member: float = 8.0  # median, lognormal, clipped to [1, n_postings]
    interactions_sigma: float = 0.8
    seeking_rate: float = 0.15  # share of members secretly looking for a job
    reveal_rate: float = 0.3  # share of a seeking member's messages that reveal it (>= 1 each)
    member_opt_out_rate: float = 0.03
    apply_rate: float = 0.05  # chance an interaction is an application (non-seeking member)
    seeking_apply_rate: float = 0.35  # same, for a seeking member
    save_rate: float = 0.2  # chance a non-application interaction is a save
    same_type_affinity: float = 1.5  # log-odds bonus of a posting of the member's type
    same_band_affinity: float = 1.0  # ... of the member's education band
    same_region_affinity: float = 1.0  # ... in the member's region
    same_occupation_affinity: float = 2.0  # ... of the member's own occupation
    seeking_senior_affinity: float = 1.5  # ... of a senior posting, for a member secretly seeking

    def __post_init__(self) -> None:
        for name in (
            "n_members",
            "n_postings",
            "messages_per_member",
            "max_messages_per_member",
            "interactions_per_member",
        ):
            _require(self, name, getattr(self, name) > 0, "must be > 0")
        for name in (
            "seeking_rate",
            "reveal_rate",
            "member_opt_out_rate",
            "apply_rate",
            "seeking_apply_rate",
            "save_rate",
        ):
            _require(self, name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]")
        for name in (
            "seed",
            "messages_sigma",
            "interactions_sigma",
            "same_type_affinity",
            "same_band_affinity",
            "same_region_affinity",
            "same_occupation_affinity",
            "seeking_senior_affinity",
        ):
            _require(self, name, getattr(self, name) >= 0, "must be >= 0")


@dataclass(frozen=True)
class EmojiTaskConfig:
    """Hydra group ``task/emoji.yaml``."""

    name: str = "emoji"
    n_buckets: int = 2**14
    max_tokens: int = 32
    bigrams: bool = True
    embedding_dim: int = 32
    hidden_dim: int = 64
    test_fraction: float = 0.2
    top_k: int = 5


@dataclass(frozen=True)
class RecommendTaskConfig:
    """Hydra group ``task/jobs.yaml`` and ``task/channels.yaml``."""

    name: str = "jobs"  # jobs | channels
    n_buckets: int = 4096  # hashed words of the user's messages (and profile)
    max_tokens: int = 128  # distinct words kept per user, in order of first use
    bigrams: bool = False
    embedding_dim: int = 32
    hidden_dim: int = 64
    test_fraction: float = 0.2  # held-out users
    holdout_fraction: float = 0.2  # each user's held-out interactions (jobs: random; channels: latest joins)
    top_k: int = 10
    topic_channels: int = 12  # channels: topic channels per workspace (data.topic_channels_per_workspace follows)
    user_topic_concentration: float = (
        20.0  # channels: how close a user's topics are to their workspace's (data. follows)
    )
    channel_discovery: bool = False  # channels: users find topic channels over time (data.channel_discovery follows)
    seeking_rate: float = 0.0  # channels: users secretly job-seeking (data.seeking_rate follows; jobs: task.jobs.*)
    jobs: JobsConfig = field(default_factory=JobsConfig)  # task=jobs: the corpus' knobs


MECHANISMS = _values(Mechanism)
MODES = _values(Mode)
ENGINES = _values(Engine)  # deployment: only inside a Flower ServerApp


@dataclass(frozen=True)
class PrivacyConfig:
    """Hydra group ``privacy/``: ``none``, ``dpsgd`` (example-level, central), ``dpfedavg`` (user-level,
    federated), ``dpftrl`` (user-level, federated, no sampling) or ``client_dpsgd`` (example-level DP-SGD inside each client, federated)."""

    mechanism: Mechanism = Mechanism.none
    unit: str = "example"  # example | user | workspace (privacy=dpfedavg: ${federation.unit})
    accountant: Accountant = Accountant.rdp
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None  # None: the largest power of ten ≤ 1/(10 N)
    clip_norm: float = 1.0
    # where every DP noise generator comes from (sandbox.privacy.noise): secure = a secret OS-CSPRNG
    # state per run / client update, never recorded; seeded = replayed from `seed` (research mode:
    # anyone with the record can subtract the noise)
    noise_source: NoiseSource = NoiseSource.secure
    # DP-FedAvg only
    clipping: Clipping = Clipping.fixed  # fixed | adaptive (Andrew et al. 2021)
    clipping_site: str = "client"  # client | server
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    count_noise_multiplier: float | None = None  # None: expected clients per round / 20
    # client-level DP-SGD only: each example joins each local step with this probability
    local_sample_rate: float = 0.25
    # DP-FTRL only (tree aggregation with restarts, no sampling; sandbox.federated.ftrl)
    clients_per_round: int | None = None  # m: the fixed number of clients of every round (the denominator)
    rounds_per_epoch: int | None = None  # k: rounds between tree restarts; None: ⌊N/m⌋ (every user once)
    participation: str = "shuffled"  # shuffled (a new order each epoch) | cyclic (the same order every epoch)
    tree_restart: str = "epoch"  # epoch: a new tree every k rounds (the only rule the accountant covers)
    max_participations_per_tree: int = 1  # the only value dp-accounting's tree RDP covers


@dataclass(frozen=True)
class DataConfig:
    """Hydra group ``data/``: ``synthetic`` (generated from ``synthetic.seed``) or ``files`` (a corpus directory)."""

    source: str = "synthetic"
    path: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    manifest: str | None = None  # data=files: a canary manifest (python -m sandbox.data plant), for the audits


@dataclass(frozen=True)
class AuditConfig:
    """Hydra group ``audit/``: a membership or memorisation audit of the run's own model."""

    attack: Attack = Attack.none  # none | loss | lira | rmia | canary | suggestions
    level: AuditLevel = AuditLevel.user  # user (a user's records together) | example (one message)
    threat: Threat = Threat.scores  # whitebox | scores (full output distribution) | topk (suggestions shown)
    topk: int = 3  # threat=topk: how many suggestions the product shows
    shadows: int = 16  # lira / rmia: shadow models, each on a random half of the users
    online: bool = False  # lira: online (IN and OUT shadows) or offline (OUT only); rmia: all refs or OUT
    rmia_gamma: float = 1.0
    rmia_offline_a: float = 0.3  # rmia offline: Pr(x) ≈ ((1 + a)·Pr_OUT(x) + (1 − a)) / 2
    threshold_fpr: float = 0.01  # the ε lower bound's threshold: best TPR at this FPR, on a separate split
    alpha: float = 0.05  # confidence 1 − alpha: the one-run bound (a bound) and the many-targets figure (a heuristic)
    resamples: int = 1000  # bootstrap resamples for the confidence intervals
    confidence: float = 0.95
    control: bool = True  # positive control: the same attack on the same pipeline without DP
    control_on: str = "same"  # same: this pipeline without DP | central: a central non-private model of the data
    control_tpr_floor: float = 0.02  # a TPR statistic catches members when its CI's lower end is above it
    workers: int = 2  # processes training shadows (each single-threaded)
    # canary one-run bound: shares of candidates guessed (half IN, half OUT); the bound is the best
    # over them, each computed at alpha / (number of distinct guess counts) (Bonferroni)
    one_run_guess_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4, 1.0])
    extraction: bool = True  # canary: search the whole secret space for each canary whose host trained
    # canary_clients: k canary clients inserted into federated training (and k never-inserted directions)
    canary_clients: int = 100
    canary_all_iterates: bool = False  # canary_clients: also the all-iterates statistic (every round's aggregate)
    # server_view: the attacker's dictionary takes wordfreq's N most frequent English words (plus Faker's
    # names and company words and the emoji lexicon); a decoded secure-aggregation sum's row is zero when
    # every |value| <= tolerance; a run under secure aggregation retrains without it for the positive control
    server_view_dictionary: int = 50_000
    server_view_tolerance: float = 0.0
    server_view_retrain_control: bool = False


@dataclass(frozen=True)
class LedgerConfig:
    """Hydra key ``ledger``: the privacy ledger in the output root (``sandbox.privacy.ledger``)."""

    path: str | None = None  # None: no ledger (e.g. library use); the CLI's config sets outputs/privacy_ledger.json
    total_epsilon: float | None = None  # per data set and unit; None: track only
    on_exceed: OnExceed = OnExceed.refuse  # refuse | warn


@dataclass(frozen=True)
class TrackingConfig:
    """Hydra key ``tracking``: optional TensorBoard / MLflow logging of the record (``sandbox.tracking``)."""

    backend: TrackingBackend = TrackingBackend.none  # none | tensorboard | mlflow
    dir: str | None = None  # tensorboard: log root (default RUN_DIR/tensorboard); mlflow: tracking URI


@dataclass(frozen=True)
class RunConfig:
    seed: int
    mode: Mode
    task: Any  # a sandbox.tasks.base.Task: the class task._target_ names (resolve builds it)
    data: DataConfig
    privacy: PrivacyConfig
    train: TrainConfig
    federation: FederationConfig
    progress: bool
    audit: AuditConfig = AuditConfig()
    ledger: LedgerConfig = LedgerConfig()
    tracking: TrackingConfig = TrackingConfig()


# -- the shapes Hydra composes (sandbox.config.store registers them; the YAML files use them) --------
@dataclass(frozen=True)
class SyntheticData(SyntheticConfig):
    """Hydra option ``data=synthetic``: ``source`` and SyntheticConfig's knobs, flat (``data.n_users``)."""

    source: str = "synthetic"


@dataclass(frozen=True)
class FilesData:
    """Hydra option ``data=files``: a corpus directory (``data.path``)."""

    source: str = "files"
    path: str = MISSING
    manifest: str | None = None  # the canary manifest of `python -m sandbox.data plant` (audit=canary reads it)


@dataclass(frozen=True)
class SandboxConfig:
    """The root of ``sandbox/conf/config.yaml``: every top-level key, typed where OmegaConf can type it.

    ``task`` and ``data`` are typed by their option (``data``: SyntheticData or FilesData; ``task``:
    by ``sandbox.config.resolve``); ``claim`` is a claim file (``sandbox.claim``) or null.
    """

    task: Any = MISSING
    data: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    claim: Any = None
    mode: Mode = Mode.central  # central | federated (then privacy=none, dpfedavg or client_dpsgd)
    seed: int = 0  # drives the user split, initialisation, batch sampling and DP noise
    progress: bool = True  # progress bar on stderr, shown only when stderr is a terminal
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
