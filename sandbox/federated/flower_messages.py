"""What crosses the Flower boundary, and nothing else: the wire format of the Flower engines.

Server → client (TRAIN): the global parameters as one flat float32 array, and a
``ConfigRecord`` with the round, the client index, the client's seed, the clip norm (absent
when the client does not clip) and the run config the client rebuilds its own data from;
under client-level DP-SGD also its settings (σ, C, q, steps and the noise source). The seed
drives the client's batch order or Poisson sampling; under ``noise_source=secure`` the
client's DP noise does not come from it, and the client's own noise state is never sent.
Client → server (TRAIN reply): the update's sparse delta as two flat arrays (int64
coordinates, sorted and unique, and their float32 values: the embedding rows of the client's
tokens and the dense layers; every other coordinate is zero), or, under client-level DP-SGD,
the dense delta (values only); and a ``MetricRecord`` with the parameter count (sparse only),
the example count, the mean local loss and the unclipped bit.
Under secure aggregation (``federation.secagg``, ``flower_secagg``) the instruction also holds
the round's SecAgg+ clipping range, and the reply is Flower's SecAgg+ records only: the masked
vector (dense delta, loss, unclipped and over-range bits, quantized and masked by
``secaggplus_mod``) in ``secaggplus_configs``, and the legacy FitRes records the mod needs with
weight 1, no metrics and their arrays cleared; the SecAgg+ stages exchange public keys,
encrypted shares and node ids in ``secaggplus_configs`` (``SECAGG_KEYS``).
Discovery (QUERY): an empty question; the reply names the node's partition id.

No raw text is ever put in a record; tests/federated/test_flower.py checks every message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from omegaconf import OmegaConf

from sandbox.config import RunConfig, resolve
from sandbox.federated.aggregate import SparseDelta, Update
from sandbox.federated.client_dp import LocalDPSGD

# Record names → the keys each record may hold (the capture test checks exactly these).
PARAMS, INSTRUCTION, DELTA, UPDATE_STATS, NODE = "global-params", "instruction", "update", "update-stats", "node"
RECORD_KEYS = {
    PARAMS: {"params"},
    INSTRUCTION: {
        "round",
        "client",
        "seed",
        "clip-norm",
        "run-config",
        "local-noise-multiplier",
        "local-clip-norm",
        "local-sample-rate",
        "local-steps",
        "local-noise-source",
        "secagg-clipping-range",
    },
    DELTA: {"index", "values"},
    UPDATE_STATS: {"size", "n-examples", "loss", "unclipped"},
    NODE: {"partition-id"},
}
# SecAgg+ (federation.secagg): Flower's record of the protocol's stages, and its keys by direction
SECAGG_CONFIGS = "secaggplus_configs"
SECAGG_KEYS = {
    "sent": {"stage", "sample_num", "share_num", "threshold", "clipping_range", "target_range", "mod_range"}
    | {"max_weight", "ctxts", "srcs", "active_nids", "dead_nids"},  # + one key per neighbour's node id (share keys)
    "replied": {"pk1", "pk2", "dsts", "ctxts", "masked_params", "nids", "shares"},
}


@dataclass(frozen=True)
class TrainInstruction:
    """One client's task in one round, as the ClientApp reads it."""

    params: torch.Tensor  # flat float32 global parameters
    round: int
    client: int  # client index in the ClientPartition (= the node's partition id)
    seed: int  # seeds the client's local generator (batch order / Poisson sampling; noise only when seeded)
    clip_norm: float | None  # client-side clipping norm, None: no clipping on the client
    run_config: str  # run_config_text(cfg): what the client rebuilds its own data from
    local_dp: LocalDPSGD | None = None  # client-level DP-SGD settings, None: plain local SGD
    secagg_range: float | None = None  # SecAgg+'s clipping range this round, None: no secure aggregation


def _flat_array(vector: torch.Tensor) -> Array:
    return Array(vector.detach().to(torch.float32).contiguous().numpy())


def _flat_tensor(array: Array) -> torch.Tensor:
    values = array.numpy()
    if values.dtype != np.float32 or values.ndim != 1:
        raise ValueError(f"expected a flat float32 array, got {values.dtype} of shape {values.shape}")
    return torch.from_numpy(values.copy())


def train_content(task: TrainInstruction) -> RecordDict:
    instruction = {"round": task.round, "client": task.client, "seed": task.seed, "run-config": task.run_config}
    if task.clip_norm is not None:
        instruction["clip-norm"] = float(task.clip_norm)
    if task.local_dp is not None:
        instruction.update(
            {
                "local-noise-multiplier": float(task.local_dp.noise_multiplier),
                "local-clip-norm": float(task.local_dp.clip_norm),
                "local-sample-rate": float(task.local_dp.sample_rate),
                "local-steps": int(task.local_dp.steps),
                "local-noise-source": str(task.local_dp.noise_source),
            }
        )
    if task.secagg_range is not None:
        instruction["secagg-clipping-range"] = float(task.secagg_range)
    return RecordDict(
        {PARAMS: ArrayRecord({"params": _flat_array(task.params)}), INSTRUCTION: ConfigRecord(instruction)}
    )


def read_train_content(content: RecordDict) -> TrainInstruction:
    instruction = content[INSTRUCTION]
    clip_norm = instruction["clip-norm"] if "clip-norm" in instruction else None
    local_dp = None
    if "local-steps" in instruction:
        local_dp = LocalDPSGD(
            noise_multiplier=float(instruction["local-noise-multiplier"]),
            clip_norm=float(instruction["local-clip-norm"]),
            sample_rate=float(instruction["local-sample-rate"]),
            steps=int(instruction["local-steps"]),
            noise_source=str(instruction["local-noise-source"]),
        )
    return TrainInstruction(
        params=_flat_tensor(content[PARAMS]["params"]),
        round=int(instruction["round"]),
        client=int(instruction["client"]),
        seed=int(instruction["seed"]),
        clip_norm=None if clip_norm is None else float(clip_norm),
        run_config=str(instruction["run-config"]),
        local_dp=local_dp,
        secagg_range=float(instruction["secagg-clipping-range"]) if "secagg-clipping-range" in instruction else None,
    )


def update_content(update: Update) -> RecordDict:
    delta = update.delta
    stats = {"n-examples": int(update.n_examples), "loss": float(update.loss), "unclipped": int(update.unclipped)}
    if isinstance(delta, SparseDelta):
        stats["size"] = int(delta.size)
        arrays = {"index": Array(delta.index.to(torch.int64).contiguous().numpy()), "values": _flat_array(delta.values)}
    else:  # dense (client-level DP-SGD: noise on every coordinate)
        arrays = {"values": _flat_array(delta)}
    return RecordDict({DELTA: ArrayRecord(arrays), UPDATE_STATS: MetricRecord(stats)})


def read_update_content(content: RecordDict) -> Update:
    stats, arrays = content[UPDATE_STATS], content[DELTA]
    if "index" not in arrays:
        return Update(
            delta=_flat_tensor(arrays["values"]),
            n_examples=int(stats["n-examples"]),
            loss=float(stats["loss"]),
            unclipped=bool(stats["unclipped"]),
        )
    size, index = int(stats["size"]), arrays["index"].numpy()
    if index.dtype != np.int64 or index.ndim != 1:
        raise ValueError(f"update index: expected a flat int64 array, got {index.dtype} of shape {index.shape}")
    if len(index) and (index[0] < 0 or index[-1] >= size or np.any(np.diff(index) <= 0)):
        raise ValueError(f"update index: coordinates must be sorted, unique and in [0, {size})")
    delta = SparseDelta(index=torch.from_numpy(index.copy()), values=_flat_tensor(arrays["values"]), size=size)
    return Update(
        delta=delta, n_examples=int(stats["n-examples"]), loss=float(stats["loss"]), unclipped=bool(stats["unclipped"])
    )


def partition_content(partition_id: int) -> RecordDict:
    return RecordDict({NODE: ConfigRecord({"partition-id": int(partition_id)})})


def read_partition_content(content: RecordDict) -> int:
    return int(content[NODE]["partition-id"])


def run_config_text(cfg: RunConfig) -> str:
    """``cfg`` as JSON in the shape of the composed Hydra config, so that ``resolve`` reads it back.

    The client rebuilds its own data from this: it holds settings only (sizes, seeds, paths),
    never data.
    """
    data = (
        {"source": "files", "path": cfg.data.path}
        if cfg.data.source == "files"
        else {"source": cfg.data.source, **asdict(cfg.data.synthetic)}
    )
    task = {"_target_": f"{type(cfg.task).__module__}.{type(cfg.task).__qualname__}", **asdict(cfg.task)}
    shaped = {
        "seed": cfg.seed,
        "mode": cfg.mode,
        "progress": cfg.progress,
        "data": data,
        "task": task,
        **{
            group: asdict(getattr(cfg, group))
            for group in ("privacy", "train", "federation", "audit", "ledger", "tracking")
        },
    }
    text = json.dumps(shaped, sort_keys=True)
    if run_config_from_text(text) != cfg:  # a new RunConfig field this function does not carry yet
        raise ValueError("run_config_text does not round-trip this RunConfig; update it with the config")
    return text


def run_config_from_text(text: str) -> RunConfig:
    return resolve(OmegaConf.create(json.loads(text)))
