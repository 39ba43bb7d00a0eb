"""The Flower Simulation Engine: same model as in-process, and nothing raw crosses the boundary.

One module-scoped set of runs (two engines × two privacy settings, ~45 s, Ray started twice)
serves every test here; the DP-FedAvg Flower run logs every message on both sides.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from omegaconf import OmegaConf

from sandbox.config import resolve
from sandbox.federated.aggregate import SparseDelta, Update
from sandbox.federated.clients import partition_clients
from sandbox.federated.flower_capture import MESSAGE_LOG_ENV, records_as_json
from sandbox.federated.flower_messages import (
    RECORD_KEYS,
    read_update_content,
    run_config_from_text,
    run_config_text,
    update_content,
)
from sandbox.federated.flower_server import exchange
from sandbox.prepare import Seeds, prepare
from sandbox.run import run
from tests.conftest import TINY, compose_config

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]  # e2e: Flower, shadows or subprocess CLIs

FEDERATED_TINY = [
    *TINY,
    "task.n_buckets=1024",
    "data.n_users=40",
    "data.n_workspaces=4",
    "mode=federated",
    "federation.rounds=3",
    "federation.sample_rate=0.5",
    "federation.eval_every=3",
]
# Seeded noise (research mode): the engines must give the same model, so both must draw the same
# noise; with the default secure noise they differ by the noise draw only (tests/privacy/test_noise_source.py).
PRIVACY = {
    "none": ["privacy=none"],
    "dpfedavg": [
        "privacy=dpfedavg",
        "privacy.noise_multiplier=1.0",
        "privacy.target_epsilon=null",
        "privacy.noise_source=seeded",
    ],
    "client_dpsgd": [
        "privacy=client_dpsgd",
        "privacy.noise_multiplier=1.0",
        "privacy.target_epsilon=null",
        "privacy.noise_source=seeded",
    ],
}


def run_with(overrides: list[str], out_dir: Path) -> dict:
    hydra_cfg = compose_config(overrides)
    out_dir.mkdir(parents=True)
    return run(resolve(hydra_cfg), out_dir=out_dir, resolved_config=OmegaConf.to_container(hydra_cfg, resolve=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """privacy → engine → (record, out_dir); the DP Flower run writes messages.jsonl beside its record."""
    root = tmp_path_factory.mktemp("engines")
    out = {}
    for privacy, overrides in PRIVACY.items():
        out[privacy] = {}
        for engine in ("inprocess", "flower"):
            out_dir = root / f"{privacy}-{engine}"
            with pytest.MonkeyPatch.context() as patch:
                if (privacy, engine) == ("dpfedavg", "flower"):  # set before Ray starts: workers inherit it
                    patch.setenv(MESSAGE_LOG_ENV, str(root / "messages.jsonl"))
                record = run_with([*FEDERATED_TINY, *overrides, f"federation.engine={engine}"], out_dir)
            out[privacy][engine] = (record, out_dir)
    out["message_log"] = root / "messages.jsonl"
    return out


@pytest.mark.parametrize("privacy", list(PRIVACY))
def test_flower_simulation_gives_the_inprocess_model(runs, privacy):
    (inproc, inproc_dir), (flower, flower_dir) = runs[privacy]["inprocess"], runs[privacy]["flower"]
    assert flower["engine"] == "flower" and inproc["engine"] == "inprocess"
    assert flower["status"] == inproc["status"] == "completed"
    assert flower["privacy"]["steps"] == inproc["privacy"]["steps"]
    assert len(flower["curve"]) == len(inproc["curve"]) == 3
    assert flower["privacy"]["epsilon"] == inproc["privacy"]["epsilon"]
    assert [p["clients"] for p in flower["curve"]] == [p["clients"] for p in inproc["curve"]]
    a, b = torch.load(inproc_dir / "model.pt"), torch.load(flower_dir / "model.pt")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    assert flower["timing"]["engine_startup_seconds"] > 0 and flower["timing"]["rounds_seconds"] > 0


# -- nothing raw crosses --------------------------------------------------------------------------
def _blobs(entry: dict) -> list[bytes]:
    """Everything a message carries, as bytes: every string and number, and every array's bytes."""
    out = []

    def walk(value):
        if isinstance(value, dict):  # a bytes value or an array: {"bytes": base64, ...}
            for k, v in value.items():
                if k == "bytes":
                    out.append(base64.b64decode(v))
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            out.append(str(value).encode("utf-8"))

    for record in entry.get("records", {}).values():
        for key, value in record["values"].items():
            out.append(key.encode())
            walk(value)
    return out


def _leaks(entries: list[dict], needles: list[str]) -> list[str]:
    haystack = b"\x00".join(blob for entry in entries for blob in _blobs(entry))
    return [n for n in needles if n.encode("utf-8") in haystack]


def _array_problems(entries: list[dict], n_params: int) -> list[str]:
    """Arrays must be exactly: the global parameters (float32 [n_params]) or a sparse update
    (int64 coordinates, sorted, unique, < n_params; float32 values of the same length), in canonical .npy bytes."""
    problems = []
    for entry in entries:
        for name, record in entry.get("records", {}).items():
            if record["kind"] != "array":
                continue
            arrays = {}
            for key, array in record["values"].items():
                data = base64.b64decode(array["bytes"])
                values = np.load(io.BytesIO(data), allow_pickle=False)
                canonical = io.BytesIO()
                np.save(canonical, values, allow_pickle=False)
                if (
                    array["stype"] != "numpy.ndarray"
                    or canonical.getvalue() != data
                    or [array["dtype"], array["shape"]] != [str(values.dtype), list(values.shape)]
                ):
                    problems.append(f"{entry['side']} {entry['direction']} {name}.{key}: not canonical")
                arrays[key] = values
            where = f"{entry['side']} {entry['direction']} {name}"
            if name == "global-params":
                if arrays["params"].dtype != np.float32 or arrays["params"].shape != (n_params,):
                    problems.append(f"{where}: {arrays['params'].dtype} {arrays['params'].shape}")
            elif name == "update":
                index, values = arrays["index"], arrays["values"]
                if (
                    index.dtype != np.int64
                    or values.dtype != np.float32
                    or index.shape != values.shape
                    or index.ndim != 1
                    or (len(index) and (index[0] < 0 or index[-1] >= n_params))
                    or np.any(np.diff(index) <= 0)
                ):
                    problems.append(f"{where}: index {index.dtype} {index.shape}, values {values.dtype} {values.shape}")
            else:
                problems.append(f"{where}: unexpected array record")
    return problems


def _expected_records(entry: dict) -> dict[str, set[str]]:
    question = entry["direction"] == ("sent" if entry["side"] == "server" else "received")
    if entry["message_type"] == "query":
        return {} if question else {"node": RECORD_KEYS["node"]}
    if question:
        return {"global-params": RECORD_KEYS["global-params"], "instruction": RECORD_KEYS["instruction"]}
    return {"update": RECORD_KEYS["update"], "update-stats": RECORD_KEYS["update-stats"]}


@pytest.fixture(scope="module")
def captured(runs) -> dict:
    record, out_dir = runs["dpfedavg"]["flower"]
    entries = [json.loads(line) for line in runs["message_log"].read_text().splitlines()]
    cfg = resolve(OmegaConf.create(record["config"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    partition = partition_clients(data.corpus, data.train, unit="user")
    return {"entries": entries, "record": record, "out_dir": out_dir, "data": data, "partition": partition}


def test_every_message_is_logged_on_both_sides(captured):
    entries, record = captured["entries"], captured["record"]
    n_clients, n_trained = record["data"]["n_clients"], sum(p["clients"] for p in record["curve"])
    assert n_trained > 0
    for side in ("server", "client"):
        for direction in ("sent", "received"):
            kinds = [e["message_type"] for e in entries if e["side"] == side and e["direction"] == direction]
            assert kinds.count("query") == n_clients and kinds.count("train") == n_trained, (side, direction)
    assert not [e for e in entries if "error" in e]


OPTIONAL_INSTRUCTION = {
    "clip-norm",
    "local-noise-multiplier",
    "local-clip-norm",
    "local-sample-rate",
    "local-steps",
    "local-noise-source",
    "secagg-clipping-range",  # federation.secagg only (tests/federated/test_secagg.py checks those messages)
}


def test_only_the_expected_records_and_keys_cross(captured):
    record = captured["record"]
    for entry in captured["entries"]:
        got = {name: set(r["values"]) for name, r in entry["records"].items()}
        expected = _expected_records(entry)
        if "instruction" in expected and record["privacy"]["clipping_site"] == "client":
            assert "clip-norm" in got["instruction"]
        if "instruction" in got:  # optional: clip-norm absent when the client does not clip, the
            got["instruction"] |= (
                OPTIONAL_INSTRUCTION  # local-* keys only under client-level DP-SGD, secagg-* under SecAgg+
            )
        assert got == expected, entry["message_type"]
    n_params = sum(v.numel() for v in torch.load(captured["out_dir"] / "model.pt").values())
    assert _array_problems(captured["entries"], n_params) == []


def test_no_message_text_or_canary_crosses(captured):
    entries, data, partition = captured["entries"], captured["data"], captured["partition"]
    manifest = json.loads((captured["out_dir"] / "canaries.json").read_text())
    canaries = [c["text"] for c in manifest["inserted"]] + manifest["fresh"]
    sent_to = {
        int(e["records"]["instruction"]["values"]["client"])
        for e in entries
        if e["side"] == "server" and e["direction"] == "sent" and e["message_type"] == "train"
    }
    hosts = {uid for c in manifest["inserted"] for uid in c["user_ids"]}
    assert hosts & {data.corpus.user_ids[partition.owners[c]] for c in sent_to}, "no canary host took part"
    rows = np.concatenate([partition.rows[partition.offsets[c] : partition.offsets[c + 1]] for c in sorted(sent_to)])
    # every distinct text of the clients that took part (≥ 12 characters: shorter ones could match
    # parameter bytes by chance), the canaries among them
    texts = sorted({t for t in data.corpus.texts[data.train.message_index[rows]] if len(t) >= 12})
    assert len(texts) >= 100 and any("verification code" in t for t in texts)
    assert _leaks(entries, canaries + texts) == []


def test_the_leak_check_finds_text_smuggled_into_a_record():
    """Positive control for the checks above: text in a config value or in an array's bytes is found."""
    secret = "my verification code is 4 8 1 9 2 7"
    as_bytes = np.frombuffer(secret.encode(), dtype=np.uint8).copy()
    content = RecordDict(
        {
            "instruction": ConfigRecord({"note": secret}),
            "update": ArrayRecord(
                {"index": Array(np.arange(len(as_bytes), dtype=np.int64)), "values": Array(as_bytes)}
            ),
        }
    )
    entry = {"side": "client", "direction": "sent", "records": records_as_json(content)}
    assert _leaks([entry], [secret]) == [secret]
    del entry["records"]["instruction"]
    assert _leaks([entry], [secret]) == [secret]  # found in the array's bytes too
    assert _array_problems([entry], n_params=len(as_bytes)) != []  # and the values are not float32


# -- the wire format and the loop's failure modes (no Ray) ---------------------------------------
def test_run_config_round_trips_through_its_text():
    cfg = resolve(compose_config([*FEDERATED_TINY, *PRIVACY["dpfedavg"]]))
    assert run_config_from_text(run_config_text(cfg)) == cfg


def test_update_round_trips_exactly():
    delta = SparseDelta(
        index=torch.tensor([0, 3, 4, 16]), size=17, values=torch.randn(4, generator=torch.Generator().manual_seed(0))
    )
    update = Update(delta=delta, n_examples=5, loss=1.2345678901234567, unclipped=False)
    back = read_update_content(update_content(update))
    assert torch.equal(back.delta.index, delta.index) and torch.equal(back.delta.values, delta.values)
    assert back.delta.values.dtype == torch.float32 and back.delta.size == 17
    assert (back.n_examples, back.loss, back.unclipped) == (5, update.loss, False)


def test_a_dense_update_round_trips_exactly():
    update = Update(delta=torch.randn(17, generator=torch.Generator().manual_seed(1)), n_examples=2, loss=0.5)
    content = update_content(update)
    assert set(content["update"]) == {"values"}  # client-level DP-SGD: noise on every coordinate
    back = read_update_content(content)
    assert torch.equal(back.delta, update.delta) and back.n_examples == 2


@pytest.mark.parametrize("index", [[0, 3, 3, 16], [0, 3, 17, 2], [-1, 0, 1, 2]])
def test_a_malformed_update_index_is_rejected(index):
    content = update_content(
        Update(
            delta=SparseDelta(index=torch.tensor([0, 1, 2, 3]), values=torch.ones(4), size=17), n_examples=1, loss=0.0
        )
    )
    content["update"]["index"] = Array(np.array(index, dtype=np.int64))
    with pytest.raises(ValueError, match="update index"):
        read_update_content(content)


class _ScriptedGrid:
    """Replies to each message as scripted: 'ok', 'error' or 'silent' (never replies)."""

    def __init__(self, script: dict[int, str]):
        self.script, self.pushed = script, {}

    def push_messages(self, messages):
        self.pushed = {f"id-{m.metadata.dst_node_id}": m.metadata.dst_node_id for m in messages}
        return list(self.pushed)

    def pull_messages(self, message_ids):
        replies = []
        for message_id in list(message_ids):
            node = self.pushed.pop(message_id, None)
            if node is not None and self.script[node] != "silent":
                replies.append(
                    SimpleNamespace(
                        metadata=SimpleNamespace(src_node_id=node, reply_to_message_id=message_id),
                        has_error=lambda outcome=self.script[node]: outcome == "error",
                        error=SimpleNamespace(code=1, reason="ClientApp raised ValueError"),
                    )
                )
        return replies


def _messages(nodes):
    return [SimpleNamespace(metadata=SimpleNamespace(dst_node_id=n)) for n in nodes]


def test_a_client_error_or_a_missing_reply_fails_the_round_loudly():
    assert set(exchange(_ScriptedGrid({1: "ok", 2: "ok"}), _messages([1, 2]), what="round 1")) == {1, 2}
    with pytest.raises(RuntimeError, match="round 1: node 2 replied with error.*ValueError"):
        exchange(_ScriptedGrid({1: "ok", 2: "error"}), _messages([1, 2]), what="round 1")
    with pytest.raises(RuntimeError, match=r"round 3: no reply from nodes \[2\]"):
        exchange(_ScriptedGrid({1: "ok", 2: "silent"}), _messages([1, 2]), what="round 3", timeout=0.3)
