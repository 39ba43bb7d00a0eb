"""Secure aggregation (``federation.secagg``): Flower's SecAgg+ gives the server the round's sum only.

Fast tests run Flower's own ``SecAggPlusWorkflow`` and ``secaggplus_mod`` against ClientApps in
this process (``LocalGrid`` delivers each message to its node's ClientApp, as the Simulation
Engine would, with one Context per node): the unmasked sum against the exact sum of known
vectors, within the quantization bound n · 2c/T per coordinate; what crosses the wire; the
config refusals. The e2e tests run the Simulation Engine and the Deployment Engine.

The bound: Flower quantizes each coordinate x ∈ [-c, c] to (x + c)·T/(2c) with *stochastic*
rounding (``flwr.common.secure_aggregation.quantization._stochastic_round``: ceil, minus one
with probability ceil(v) − v), so one client's dequantized coordinate is within one step
2c/T of x, and a sum over n clients within n·2c/T. DP-FedAvg divides the sum by q·N; the
server optimizer (FedAvgM, lr η, momentum β) applies round r's error again in every later
round through the momentum: after R rounds |Δθ| ≤ η Σ_r (Σ_{s=0}^{R−r} β^s) n_r·step/(qN),
plus the clients' response to a start that moved by that much (second order here) and float
rounding between engines (≤ 1e-5, tests/federated/test_flower.py).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from omegaconf import OmegaConf

from sandbox.config import ConfigError, resolve
from sandbox.federated.aggregate import SparseDelta, Update
from sandbox.federated.flower_messages import SECAGG_CONFIGS, SECAGG_KEYS
from sandbox.federated.flower_secagg import (
    FITRES_RECORDS,
    LOSS_RANGE,
    PollingGrid,
    SecAggSettings,
    SecureAggregator,
    secagg_only_mod,
    secure_reply_content,
    secure_vector,
)
from sandbox.federated.rounds import RoundSum
from sandbox.federated.server import RoundPlan
from tests.conftest import TINY, compose_config

# -- the protocol in this process ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """A Message needs the process' run (set by Flower's app processes; here, by hand)."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


class LocalGrid(Grid):
    """Delivers each pushed message (a deep copy: nothing is shared across the wire) to its node's ClientApp."""

    def __init__(self, apps: dict[int, ClientApp]):
        self.apps = apps
        self.contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={}) for nid in apps
        }
        self.replies: dict[str, Message] = {}
        self.log: list[tuple[str, Message]] = []  # (direction, message) as they crossed

    def set_run(self, run):
        pass

    @property
    def run(self):
        return None

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id, message_type, group_id=group_id)

    def get_node_ids(self):
        return list(self.apps)

    def get_nodes(self):
        return []

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg = copy.deepcopy(msg)
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            nid = msg.metadata.dst_node_id
            self.log.append(("sent", msg))
            reply = self.apps[nid](msg, self.contexts[nid])
            reply.metadata.__dict__["_src_node_id"] = nid
            self.log.append(("replied", reply))
            self.replies[msg.metadata.message_id] = copy.deepcopy(reply)
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


def client_apps(updates: dict[int, Update]) -> dict[int, ClientApp]:
    """One ClientApp per node, replying under SecAgg+ with its known update (the mod masks it)."""
    apps = {}
    for nid, update in updates.items():
        app = ClientApp(mods=[secagg_only_mod])

        @app.train()
        def train(msg: Message, context: Context, update=update) -> Message:
            c = float(msg.content["instruction"]["secagg-clipping-range"])
            return Message(secure_reply_content(update, c), reply_to=msg)

        apps[nid] = app
    return apps


def secure_sum(updates: list[Update], *, settings: SecAggSettings, clip_norm: float | None = 1.0):
    """The SecAgg+ sum of ``updates`` (one node each), as the server receives it, and the grid's log."""
    nodes = {1000 + i: u for i, u in enumerate(updates)}
    grid = LocalGrid(client_apps(nodes))
    size = len(updates[0].delta.to_dense() if isinstance(updates[0].delta, SparseDelta) else updates[0].delta)
    aggregator = SecureAggregator(grid=PollingGrid(grid, interval=0.0, timeout=10.0), settings=settings, size=size)
    clients = np.arange(len(updates))
    plan = RoundPlan(round=1, clients=clients, client_seeds=tuple(range(len(updates))), clip_norm=clip_norm)
    c = settings.range_for(clip_norm)
    contents = {nid: RecordDict({"instruction": ConfigRecord({"secagg-clipping-range": c})}) for nid in nodes}
    return aggregator.round_sum(plan, contents), aggregator, grid


def settings(**kw) -> SecAggSettings:
    values = dict(
        num_shares=3, reconstruction_threshold=2, clipping_range=None, quantization_range=2**22, modulus_range=2**32
    )
    return SecAggSettings(**{**values, **kw})


def random_updates(n: int, size: int, *, c: float, seed: int = 0) -> list[Update]:
    g = torch.Generator().manual_seed(seed)
    return [
        Update(
            delta=(torch.rand(size, generator=g) * 2 - 1) * c,
            n_examples=5 + i,
            loss=float(0.5 + i),
            unclipped=bool(i % 2),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("quantization_range", [2**22, 2**10])
def test_the_secure_sum_is_the_exact_sum_within_n_quantization_steps(quantization_range):
    n, size, c = 5, 300, 0.7
    updates = random_updates(n, size, c=c)
    s = settings(quantization_range=quantization_range)
    got, aggregator, _ = secure_sum(updates, settings=s, clip_norm=c)
    exact = torch.stack([u.delta.double() for u in updates]).sum(0)
    error = (got.total.double() - exact).abs().max().item()
    step = 2 * c / quantization_range
    float32 = exact.abs().max().item() * 2**-23  # the sum is handed over as float32
    assert error <= n * step + float32
    if quantization_range == 2**10:  # coarse: the error is of the order of a step (stochastic rounding)
        assert error > 0.1 * step
    assert isinstance(got, RoundSum) and list(got.clients) == list(range(n)) and got.weight == n
    assert got.n_unclipped == sum(u.unclipped for u in updates) == 2
    assert got.loss_sum == pytest.approx(sum(u.loss for u in updates), abs=n * step * LOSS_RANGE / c)
    assert aggregator.info()["clients_over_range"] == 0
    assert aggregator.info()["quantization_step_max"] == pytest.approx(step)


def test_a_sparse_update_is_summed_dense_and_over_range_clients_are_counted():
    size, c = 50, 0.5
    sparse = Update(
        delta=SparseDelta(index=torch.tensor([3, 7]), values=torch.tensor([0.25, -0.9]), size=size),
        n_examples=3,
        loss=1.0,
        unclipped=True,
    )
    dense = Update(delta=torch.full((size,), 0.1), n_examples=2, loss=2.0, unclipped=False)
    vector = secure_vector(sparse, c)
    assert vector.dtype == np.float64 and len(vector) == size + 3
    assert vector[3] == 0.25 and vector[7] == pytest.approx(-0.9) and vector[size + 2] == c  # |-0.9| > c
    got, aggregator, _ = secure_sum([sparse, dense], settings=settings(clipping_range=c), clip_norm=None)
    expected = torch.full((size,), 0.1)
    expected[3] += 0.25
    expected[7] += -c  # the quantizer clips to the range
    assert torch.allclose(got.total, expected, atol=2 * 2 * c / 2**22 + 1e-7)
    assert aggregator.info()["clients_over_range"] == 1


def test_the_server_never_receives_an_update_only_masked_vectors():
    """Every reply holds SecAgg+ keys only, the FitRes records empty or constant; the masked vectors
    are uniform mod M (far from the quantized update: mean of a quantized coordinate of a small delta ≈ T/2)."""
    updates = random_updates(4, 5000, c=0.01)
    _, _, grid = secure_sum(updates, settings=settings(), clip_norm=1.0)
    masked = []
    for direction, msg in grid.log:
        content = msg.content
        if direction == "replied":
            assert set(content.config_records) - {SECAGG_CONFIGS} <= set(FITRES_RECORDS)
            assert set(content[SECAGG_CONFIGS]) <= SECAGG_KEYS["replied"]
            assert all(len(record) == 0 for record in content.array_records.values())  # cleared by the mod
            if "masked_params" in content[SECAGG_CONFIGS]:  # the collect stage: the handler's FitRes, emptied
                assert set(content.array_records) | set(content.metric_records) | set(content.config_records) == set(
                    FITRES_RECORDS
                ) | {SECAGG_CONFIGS}
                assert dict(content["fitres.num_examples"]) == {"num_examples": 1}
                assert len(content["fitres.metrics"]) == 0
                from flwr.common import bytes_to_ndarray

                masked.append(
                    np.concatenate([bytes_to_ndarray(b).ravel() for b in content[SECAGG_CONFIGS]["masked_params"]])
                )
        else:
            keys = set(content[SECAGG_CONFIGS]) - SECAGG_KEYS["sent"]
            assert all(k.isdigit() for k in keys)  # share keys: one public-key pair per neighbour node id
    assert len(masked) == 4
    for vector in masked:  # a quantized small delta sits at ≈ T/2 = 2**21; masked: uniform over [0, 2**32)
        # 4,999 uniform coordinates: their mean's sd is 0.8% of 2**31, so 5% is 6 sd (at 200 coordinates and
        # 10%, 2.4 sd: one run in 16 failed by chance)
        assert vector[1:].mean() == pytest.approx(2**31, rel=0.05)
        assert scipy.stats.kstest(vector[1:] / 2**32, "uniform").pvalue > 1e-6


def test_a_lone_client_is_dropped_and_no_client_is_nothing():
    aggregator = SecureAggregator(
        grid=PollingGrid(LocalGrid({}), interval=0.0, timeout=1.0), settings=settings(), size=4
    )
    plan = RoundPlan(round=1, clients=np.array([3]), client_seeds=(1,), clip_norm=1.0)
    got = aggregator.round_sum(plan, {})
    assert isinstance(got, RoundSum) and len(got.clients) == 0 and float(got.total.abs().sum()) == 0
    assert aggregator.info()["single_client_rounds_dropped"] == 1
    assert (
        aggregator.round_sum(RoundPlan(round=2, clients=np.array([], dtype=int), client_seeds=(), clip_norm=1.0), {})
        == []
    )


def test_secaggplus_mod_is_not_a_no_op_for_plain_train_messages_so_it_is_guarded():
    from flwr.client.mod import secaggplus_mod

    msg = Message(
        RecordDict({"instruction": ConfigRecord({"round": 1})}), dst_node_id=1, message_type=MessageType.TRAIN
    )
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    called = []

    def handler(m, c):
        called.append(m)
        return m

    with pytest.raises(KeyError):
        secaggplus_mod(msg, ctx, handler)
    assert secagg_only_mod(msg, ctx, handler) is msg and called == [msg]


# -- config ---------------------------------------------------------------------------------------

FED = ["mode=federated", "federation.secagg=true"]
DP = ["privacy=dpfedavg", "privacy.noise_multiplier=1.0", "privacy.target_epsilon=null"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ([*FED, *DP], "federation.secagg"),  # engine inprocess
        ([*FED, *DP, "federation.engine=flower", "privacy.clipping_site=server"], "federation.secagg"),
        (
            [*FED, *DP, "federation.engine=flower", "federation.secagg_clipping_range=0.5"],
            "federation.secagg_clipping_range",
        ),
        (
            [
                *FED,
                *DP,
                "federation.engine=flower",
                "privacy.clipping=adaptive",
                "federation.secagg_clipping_range=2.0",
            ],
            "federation.secagg_clipping_range",
        ),
        ([*FED, "federation.engine=flower", "privacy=none"], "federation.secagg_clipping_range"),
        ([*FED, *DP, "federation.engine=flower", "federation.secagg_num_shares=2"], "federation.secagg_num_shares"),
        (
            [*FED, *DP, "federation.engine=flower", "federation.secagg_reconstruction_threshold=3"],
            "federation.secagg_reconstruction_threshold",
        ),
        (
            [*FED, *DP, "federation.engine=flower", "federation.secagg_modulus_range=3000000000"],
            "federation.secagg_modulus_range",
        ),
        (
            [*FED, *DP, "federation.engine=flower", "federation.secagg_modulus_range=4194304"],
            "federation.secagg_modulus_range",
        ),
    ],
)
def test_configs_secure_aggregation_cannot_run_are_refused(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        resolve(compose_config(overrides))


def test_the_message_of_the_engine_refusal():
    with pytest.raises(ConfigError, match="secure aggregation runs in Flower: federation.engine=flower\\|deployment"):
        resolve(compose_config([*FED, *DP]))


@pytest.mark.parametrize(
    "overrides",
    [
        [*FED, *DP, "federation.engine=flower"],
        [*FED, *DP, "federation.engine=flower", "privacy.clipping=adaptive"],
        [
            *FED,
            *DP,
            "federation.engine=deployment",
            "federation.secagg_clipping_range=2.0",
            "federation.secagg_num_shares=1.0",
        ],
        [*FED, "federation.engine=flower", "privacy=none", "federation.secagg_clipping_range=0.5"],
        [*FED, "federation.engine=flower", "privacy=client_dpsgd", "federation.secagg_clipping_range=4.0"],
    ],
)
def test_configs_secure_aggregation_can_run_resolve(overrides):
    cfg = resolve(compose_config(overrides))
    s = SecAggSettings.from_config(cfg.federation)
    assert isinstance(s.num_shares, int if cfg.federation.secagg_num_shares > 1 else float)
    assert s.max_clients() == 1023  # 2**32 / 2**22 − 1


# -- the engines ----------------------------------------------------------------------------------

FEDERATED_TINY = [
    *TINY,
    "task.n_buckets=1024",
    "data.n_users=40",
    "data.n_workspaces=4",
    "mode=federated",
    "federation.rounds=2",
    "federation.sample_rate=0.5",
    "federation.eval_every=2",
    "audit=none",
    *DP,
    "privacy.noise_source=seeded",  # one noise draw on both sides: the difference is SecAgg+'s quantization
]


def _run(overrides: list[str], out_dir: Path) -> tuple[dict, dict]:
    from sandbox.run import run

    hydra_cfg = compose_config(overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = run(resolve(hydra_cfg), out_dir=out_dir, resolved_config=OmegaConf.to_container(hydra_cfg, resolve=True))
    return record, torch.load(out_dir / "model.pt")


def _bound(record: dict, *, step: float, n_clients: int, q: float, lr: float = 1.0, beta: float = 0.9) -> float:
    """η Σ_r (Σ_{s=0}^{R−r} β^s) n_r·step/(qN), doubled for the clients' response to the moved start."""
    clients = [p["clients"] for p in record["curve"]]
    rounds = len(clients)
    per_round = [n * step / (q * n_clients) for n in clients]
    return 2 * lr * sum(sum(beta**s for s in range(rounds - r)) * e for r, e in enumerate(per_round))


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore")
def test_a_secagg_simulation_gives_the_inprocess_model_within_the_quantization_bound(tmp_path):
    """T = 2**12: coarse, so that the quantization error stands above float rounding between engines
    (at the default 2**22 the bound is ~1e-6, below that rounding: the deployment test runs the default)."""
    inprocess, plain = _run(FEDERATED_TINY, tmp_path / "inprocess")
    for quantization_range in (2**12,):  # one Ray start: a second range would double the cost
        record, model = _run(
            [
                *FEDERATED_TINY,
                "federation.engine=flower",
                "federation.secagg=true",
                f"federation.secagg_quantization_range={quantization_range}",
            ],
            tmp_path / f"secagg{quantization_range}",
        )
        info = record["privacy"]["secure_aggregation"]
        assert info["quantization_range"] == quantization_range and info["secure_rounds"] == 2
        assert info["clients_over_range"] == 0 and info["clipping_range_max"] == 1.0
        error = max(float((model[k] - plain[k]).abs().max()) for k in model)
        bound = _bound(record, step=info["quantization_step_max"], n_clients=record["data"]["n_clients"], q=0.5)
        assert 1e-5 < error <= bound + 1e-5, (error, bound)
        assert [p["clients"] for p in record["curve"]] == [p["clients"] for p in inprocess["curve"]]
        for a, b in zip(record["curve"], inprocess["curve"]):  # the loss is summed securely too
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=LOSS_RANGE * 2 / quantization_range + 1e-6)


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "flower-deploy"
CROSS_SILO_SECAGG = [
    "mode=federated",
    "federation=cross_silo",
    "data.n_workspaces=3",
    "data.n_users=60",
    "data.workspace_opt_out_rate=0",
    "federation.rounds=2",
    "federation.sample_rate=1.0",
    "federation.secagg=true",
    *DP,
    "privacy.noise_source=seeded",
]


@pytest.mark.slow  # 170-180 s: `make test-slow` (the SecAgg+ simulation test above runs in `make test`)
@pytest.mark.deployment
@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore")
def test_a_secagg_deployment_run_gives_the_inprocess_model(tmp_path):
    out_dir = tmp_path / "run"
    env = {**os.environ, "OUT_DIR": str(out_dir), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([str(SCRIPT), *CROSS_SILO_SECAGG], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out_dir / "record.json").read_text())
    assert record["engine"] == "deployment" and record["status"] == "completed"
    info = record["privacy"]["secure_aggregation"]
    assert info["secure_rounds"] == 2 and info["clients_over_range"] == 0
    assert [p["clients"] for p in record["curve"]] == [3, 3]
    _, plain = _run(
        [*(o for o in CROSS_SILO_SECAGG if o != "federation.secagg=true"), "federation.engine=inprocess"],
        tmp_path / "inproc",
    )
    model = torch.load(out_dir / "model.pt")
    error = max(float((model[k] - plain[k]).abs().max()) for k in model)
    assert error <= _bound(record, step=info["quantization_step_max"], n_clients=3, q=1.0) + 1e-5
