"""Secure aggregation of a round (``federation.secagg=true``) with Flower's own SecAgg+.

Flower 1.41 ships SecAgg+ (Bell et al. 2020) as ``SecAggPlusWorkflow`` (server) and
``secaggplus_mod`` (ClientApp). The workflow is written for the legacy strategy API: it is
called with a ``LegacyContext``, asks ``context.strategy.configure_fit`` for the sampled
clients, runs four TRAIN-message stages (setup: public keys; share keys: encrypted Shamir
shares of each client's mask seed and key; collect masked vectors: the train instruction plus
the forwarded shares, answered by the masked update; unmask: the shares that remove the masks)
and hands only the unmasked aggregate to ``strategy.aggregate_fit``. We run it once per round
of OUR loop (``SecureAggregator.round_sum``): a strategy stub names the plan's nodes, the
collect stage carries our own TRAIN content (``flower_messages.train_content``), and the stub
keeps the aggregate. The server thus never holds one client's update, only the sum.

What the mod masks (client side): it runs our train handler and reads its reply as a legacy
``FitRes`` (``fitres.parameters`` arrays, ``fitres.num_examples``, ``fitres.metrics``,
``fitres.status``), multiplies the arrays by the quantized weight ``num_examples / max_weight``,
clips every coordinate to ±``clipping_range``, quantizes it to ``quantization_range`` levels
with *stochastic* rounding (unbiased, error < one step), adds the masks mod ``modulus_range``,
and clears the arrays; ``num_examples`` and ``metrics`` would cross in plaintext. So the
handler replies with ``num_examples = max_weight = 1`` (every client the same weight, exactly
1 after quantization), no metrics, and one float64 vector (``secure_vector``): the dense delta
(a sparse update's support would reveal the client's tokens), then three scalars scaled into
the range: the mean local loss (``LOSS_RANGE``), the unclipped bit (adaptive clipping's count)
and the over-range bit (did the quantizer clip a coordinate). The workflow returns the plain
mean of the active clients' vectors; the sum is that mean times their count (which the server
knows: it sent the messages).

Error per coordinate of the sum: each client's quantization error is < step = 2·c/T
(c = clipping range, T = quantization range), so the sum is within n·step of the exact sum of
the (clipped) vectors, n = clients in the round.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from sandbox.config.schema import FederationConfig
from sandbox.federated.aggregate import SparseDelta, Update
from sandbox.federated.flower_messages import SECAGG_CONFIGS
from sandbox.federated.rounds import RoundSum

SECAGG_STATE = RECORD_KEY_STATE  # Flower's record of the mod's state (in the node's Context, never sent)
if SECAGG_CONFIGS != RECORD_KEY_CONFIGS:  # flower_messages names Flower's record without importing flwr's internals
    raise ImportError(f"Flower's SecAgg+ record is {RECORD_KEY_CONFIGS!r}, flower_messages says {SECAGG_CONFIGS!r}")
# the legacy FitRes records the mod reads from the handler's reply (their arrays are cleared before sending)
FITRES_RECORDS = {
    "fitres.parameters": set(),  # cleared by the mod: empty on the wire
    "fitres.num_examples": {"num_examples"},  # always 1 (= max_weight): no client's size crosses
    "fitres.metrics": set(),  # no per-client metric crosses
    "fitres.status": {"code", "message"},
}
MAX_WEIGHT = 1.0  # with num_examples = 1 every client's weight is round(1·T)/T = 1 exactly
LOSS_RANGE = 64.0  # nats: a client's mean loss is summed up to this; a larger one counts as over range
N_SCALARS = 3  # loss, unclipped, over range: after the delta in the secure vector


@dataclass(frozen=True)
class SecAggSettings:
    """``federation.secagg_*``: Flower's SecAgg+ parameters (``SecAggPlusWorkflow``'s arguments)."""

    num_shares: int | float  # int: shares per client (its neighbours incl. itself); float: fraction of the round
    reconstruction_threshold: int | float  # int: shares needed; float: fraction of the shares
    clipping_range: float | None  # None: the round's clip norm (DP-FedAvg with client clipping)
    quantization_range: int
    modulus_range: int

    @classmethod
    def from_config(cls, fed: FederationConfig) -> SecAggSettings:
        def count_or_fraction(value: float) -> int | float:
            return float(value) if value <= 1 else int(value)

        return cls(
            num_shares=count_or_fraction(fed.secagg_num_shares),
            reconstruction_threshold=count_or_fraction(fed.secagg_reconstruction_threshold),
            clipping_range=None if fed.secagg_clipping_range is None else float(fed.secagg_clipping_range),
            quantization_range=int(fed.secagg_quantization_range),
            modulus_range=int(fed.secagg_modulus_range),
        )

    def range_for(self, clip_norm: float | None) -> float:
        """The round's clipping range: the configured one, else the clip norm clients clip to this round."""
        c = self.clipping_range if self.clipping_range is not None else clip_norm
        if c is None or not c > 0:
            raise ValueError("federation.secagg_clipping_range: no range (and no client clip norm) for this round")
        return float(c)

    def step(self, clipping_range: float) -> float:
        """One quantization level: a client's per-coordinate error is below this (stochastic rounding)."""
        return 2.0 * clipping_range / self.quantization_range

    def max_clients(self) -> int:
        """Sums stay below the modulus while n · T < M (each quantized coordinate is in [0, T])."""
        return math.ceil(self.modulus_range / self.quantization_range) - 1


# -- client side ---------------------------------------------------------------------------------


def secure_vector(update: Update, clipping_range: float) -> np.ndarray:
    """What a client contributes to the secure sum: [dense delta, loss, unclipped, over range] (float64).

    The scalars are scaled into [0, c]: loss as c·min(loss, LOSS_RANGE)/LOSS_RANGE, the bits as c·bit.
    Over range: a delta coordinate beyond ±c (the quantizer clips it) or a loss beyond LOSS_RANGE.
    """
    c = float(clipping_range)
    delta = update.delta.to_dense() if isinstance(update.delta, SparseDelta) else update.delta
    delta = delta.detach().to(torch.float64).numpy()
    loss = float(update.loss)
    over = bool(np.any(np.abs(delta) > c)) or not 0.0 <= loss <= LOSS_RANGE
    scalars = [c * min(max(loss, 0.0), LOSS_RANGE) / LOSS_RANGE, c * float(bool(update.unclipped)), c * float(over)]
    return np.concatenate([delta, np.asarray(scalars, dtype=np.float64)])


def secure_reply_content(update: Update, clipping_range: float) -> RecordDict:
    """The train handler's reply under SecAgg+: the legacy FitRes the mod masks (weight 1, no metrics)."""
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([secure_vector(update, clipping_range)]),
        num_examples=1,
        metrics={},
    )
    return compat.fitres_to_recorddict(fitres, keep_input=False)


def is_secagg_message(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN and SECAGG_CONFIGS in msg.content.config_records


def secagg_only_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """``secaggplus_mod`` for SecAgg+ messages only; every other message passes by.

    Flower's mod is not a no-op for a plain TRAIN message (it requires its configs record and
    raises without it), so one ClientApp serves both kinds of run through this guard."""
    if not is_secagg_message(msg):
        return call_next(msg, context)
    from flwr.client.mod import secaggplus_mod  # deferred: only SecAgg+ runs need it

    return secaggplus_mod(msg, context, call_next)


# -- server side ---------------------------------------------------------------------------------


class _Node(ClientProxy):
    """The legacy ClientProxy the workflow keys its state by: only ``node_id`` is used."""

    def __init__(self, node_id: int):
        super().__init__(cid=str(node_id))
        self.node_id = node_id

    def _unused(self, *args, **kwargs):
        raise NotImplementedError("SecAgg+ here only names nodes; messages go through the Grid")

    get_properties = get_parameters = fit = evaluate = reconnect = _unused


class _RoundStrategy(Strategy):
    """The legacy strategy the workflow calls: names this round's nodes and keeps the aggregate."""

    def __init__(self, node_ids: list[int]):
        self.node_ids = node_ids
        self.aggregate: np.ndarray | None = None
        self.n_results = 0
        self.n_failures = 0

    def initialize_parameters(self, client_manager):
        return None

    def configure_fit(self, server_round, parameters, client_manager):
        return [(_Node(nid), FitIns(Parameters(tensors=[], tensor_type=""), {})) for nid in self.node_ids]

    def aggregate_fit(self, server_round, results, failures):
        self.n_results, self.n_failures = len(results), len(failures)
        if results:  # every result's parameters are the same aggregate (the workflow sets them)
            (self.aggregate,) = parameters_to_ndarrays(results[0][1].parameters)
        return None, {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _RoundWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow whose collect stage carries our TRAIN content (not a legacy FitIns)."""

    def __init__(self, contents: dict[int, RecordDict], **kwargs):
        super().__init__(**kwargs)
        self.contents = contents

    def setup_stage(self, grid, context, state) -> bool:
        ok = super().setup_stage(grid, context, state)
        state.nid_to_fitins = {nid: self.contents[nid] for nid in state.nid_to_fitins}
        return ok


class PollingGrid(Grid):
    """A Grid whose ``send_and_receive`` pulls every ``interval`` s (the deployment Grid waits 3 s per pull,
    which would dominate SecAgg+'s four exchanges a round); it counts the bytes of every reply."""

    def __init__(self, grid: Grid, *, interval: float, timeout: float):
        self._grid, self.interval, self.timeout = grid, interval, timeout
        self.reply_bytes = 0

    def set_run(self, run) -> None:
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self):
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages):
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):
        replies = list(self._grid.pull_messages(message_ids))
        self.reply_bytes += sum(content_bytes(r.content) for r in replies if not r.has_error())
        return replies

    def send_and_receive(self, messages, *, timeout=None):
        pending, replies = set(self.push_messages(list(messages))), []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while pending and time.monotonic() < deadline:
            got = self.pull_messages(pending)
            replies.extend(got)
            pending.difference_update(r.metadata.reply_to_message_id for r in got)
            if pending:
                time.sleep(self.interval)
        return replies


def content_bytes(content: RecordDict) -> int:
    """Payload bytes of a message: array data, bytes and strings, 8 per number (Flower's framing not counted)."""

    def size(value) -> int:
        if isinstance(value, list):
            return sum(size(v) for v in value)
        if isinstance(value, bytes | str):
            return len(value)
        return 8

    total = sum(len(a.data) for record in content.array_records.values() for a in record.values())
    for record in [*content.config_records.values(), *content.metric_records.values()]:
        total += sum(size(v) for v in record.values())
    return total


@dataclass
class SecureAggregator:
    """One SecAgg+ run of Flower's workflow per round; ``round_sum`` is the engine's ``updates_of``."""

    grid: PollingGrid
    settings: SecAggSettings
    size: int  # the model's parameter count
    rounds: int = 0
    clients_over_range: int = 0  # client-rounds whose vector the quantizer clipped (or loss past LOSS_RANGE)
    single_client_rounds: int = 0  # rounds with one sampled client: its update is dropped (nothing to hide it in)
    secure_seconds: float = 0.0
    client_rounds: int = 0
    _ranges: list = field(default_factory=list)

    def round_sum(self, plan, contents: dict[int, RecordDict]) -> RoundSum | list:
        """The sum of the round's updates; ``contents``: node id → its TRAIN content (our wire format)."""
        n = len(plan.clients)
        if n == 0:
            return []
        if n == 1:  # SecAgg+ needs ≥ 2 clients; a lone update would be seen as is
            self.single_client_rounds += 1
            return RoundSum(total=torch.zeros(self.size), clients=plan.clients[:0], weight=0.0, loss_sum=0.0)
        if n > self.settings.max_clients():
            raise RuntimeError(
                f"round {plan.round}: {n} clients would overflow SecAgg+'s sums (n · T ≥ M); raise "
                "federation.secagg_modulus_range or lower federation.secagg_quantization_range"
            )
        c = self.settings.range_for(plan.clip_norm)
        self._ranges.append(c)
        strategy = _RoundStrategy(list(contents))
        workflow = _RoundWorkflow(
            contents,
            num_shares=self.settings.num_shares,
            reconstruction_threshold=self.settings.reconstruction_threshold,
            max_weight=MAX_WEIGHT,
            clipping_range=c,
            quantization_range=self.settings.quantization_range,
            modulus_range=self.settings.modulus_range,
            timeout=self.grid.timeout,
        )
        state = RecordDict(
            {
                MAIN_CONFIGS_RECORD: ConfigRecord({WorkflowKey.CURRENT_ROUND: int(plan.round)}),
                MAIN_PARAMS_RECORD: ArrayRecord(),
            }
        )
        context = LegacyContext(
            Context(run_id=0, node_id=0, node_config={}, state=state, run_config={}), strategy=strategy
        )
        started = time.perf_counter()
        workflow(self.grid, context)
        self.secure_seconds += time.perf_counter() - started
        if strategy.aggregate is None or strategy.n_results != n or strategy.n_failures:
            raise RuntimeError(
                f"round {plan.round}: SecAgg+ halted or lost clients ({strategy.n_results} of {n} results, "
                f"{strategy.n_failures} failures); see Flower's log"
            )
        vector = strategy.aggregate * n  # the workflow returns the mean of the n masked-then-unmasked vectors
        if vector.shape != (self.size + N_SCALARS,):
            raise RuntimeError(f"round {plan.round}: aggregate of shape {vector.shape}, expected {self.size + 3}")
        loss, unclipped, over = vector[self.size :] / c
        self.rounds += 1
        self.client_rounds += n
        self.clients_over_range += round(over)
        return RoundSum(
            total=torch.from_numpy(vector[: self.size].astype(np.float32)),
            clients=plan.clients,
            weight=float(n),  # a plain mean without DP-FedAvg (no client's size is revealed)
            loss_sum=float(loss * LOSS_RANGE),
            n_unclipped=round(unclipped),
        )

    def info(self) -> dict:
        """For the record (``privacy.secure_aggregation``): the protocol's parameters, the stated error bound, the counts."""
        s, ranges = self.settings, self._ranges
        return {
            "protocol": "SecAgg+ (Flower SecAggPlusWorkflow + secaggplus_mod)",
            "num_shares": s.num_shares,
            "reconstruction_threshold": s.reconstruction_threshold,
            "clipping_range": s.clipping_range if s.clipping_range is not None else "the round's clip norm",
            "clipping_range_max": max(ranges, default=None),
            "quantization_range": s.quantization_range,
            "modulus_range": s.modulus_range,
            "quantization_step_max": max((s.step(c) for c in ranges), default=None),
            "rounding": "stochastic (unbiased; error < one step per client and coordinate)",
            "vector_length": self.size + N_SCALARS,
            "secure_rounds": self.rounds,
            "single_client_rounds_dropped": self.single_client_rounds,
            "clients_over_range": self.clients_over_range,
            "client_upload_bytes_per_round": round(self.grid.reply_bytes / self.client_rounds)
            if self.client_rounds
            else None,
            "secure_aggregation_seconds": round(self.secure_seconds, 3),
        }
