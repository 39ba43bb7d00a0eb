"""task=jobs on the Flower Simulation Engine: the in-process model, and nothing of a member crosses.

One module-scoped pair of runs (in-process, then Flower with every message logged on both
sides; Ray starts once, ~20 s) serves every test here.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sandbox.config import resolve
from sandbox.data.jobs import SENSITIVE_PHRASES, generate_jobs
from sandbox.federated.clients import partition_clients
from sandbox.federated.flower_capture import MESSAGE_LOG_ENV
from sandbox.federated.flower_messages import RECORD_KEYS
from sandbox.prepare import Seeds, prepare
from sandbox.run import run
from sandbox.tasks.emoji import EmojiModel
from tests.conftest import compose_config
from tests.federated.test_flower import _array_problems, _leaks

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]  # e2e: Flower, shadows or subprocess CLIs

N_MEMBERS, N_POSTINGS = 60, 30
JOBS_FEDERATED = [
    "task=jobs",
    f"task.jobs.n_members={N_MEMBERS}",
    f"task.jobs.n_postings={N_POSTINGS}",
    "task.jobs.seeking_rate=0.3",
    "task.n_buckets=1024",
    "task.embedding_dim=16",
    "task.hidden_dim=16",
    "mode=federated",
    "privacy=dpfedavg",
    "privacy.noise_multiplier=1.0",
    "privacy.target_epsilon=null",
    "privacy.noise_source=seeded",  # the engines give one model only if they draw the same noise
    "federation.rounds=3",
    "federation.sample_rate=0.5",
    "federation.eval_every=3",
    "progress=false",
]


def run_with(overrides: list[str], out_dir: Path) -> dict:
    hydra_cfg = compose_config(overrides)
    out_dir.mkdir(parents=True)
    return run(resolve(hydra_cfg), out_dir=out_dir, resolved_config=OmegaConf.to_container(hydra_cfg, resolve=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("jobs-engines")
    out = {"message_log": root / "messages.jsonl"}
    for engine in ("inprocess", "flower"):
        with pytest.MonkeyPatch.context() as patch:
            if engine == "flower":  # set before Ray starts: its workers inherit it
                patch.setenv(MESSAGE_LOG_ENV, str(out["message_log"]))
            out[engine] = (run_with([*JOBS_FEDERATED, f"federation.engine={engine}"], root / engine), root / engine)
    return out


@pytest.fixture(scope="module")
def captured(runs) -> dict:
    record, out_dir = runs["flower"]
    entries = [json.loads(line) for line in runs["message_log"].read_text().splitlines()]
    cfg = resolve(OmegaConf.create(record["config"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    partition = partition_clients(data.corpus, data.train, unit="user")
    n_params = sum(v.numel() for v in torch.load(out_dir / "model.pt").values())
    return {
        "entries": entries,
        "record": record,
        "cfg": cfg,
        "data": data,
        "partition": partition,
        "n_params": n_params,
    }


def test_flower_gives_the_inprocess_jobs_model(runs):
    (inproc, inproc_dir), (flower, flower_dir) = runs["inprocess"], runs["flower"]
    assert flower["task"] == inproc["task"] == "jobs"
    assert (flower["engine"], inproc["engine"]) == ("flower", "inprocess")
    assert flower["status"] == inproc["status"] == "completed"
    assert flower["privacy"]["unit"] == "user" and flower["privacy"]["steps"] == inproc["privacy"]["steps"] == 3
    assert flower["privacy"]["epsilon"] == inproc["privacy"]["epsilon"]
    assert [p["clients"] for p in flower["curve"]] == [p["clients"] for p in inproc["curve"]]
    assert sum(p["clients"] for p in flower["curve"]) > 0
    a, b = torch.load(inproc_dir / "model.pt"), torch.load(flower_dir / "model.pt")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    ranking = inproc["metrics"]["ranking"]["held_out_users"]
    assert flower["metrics"]["ranking"]["held_out_users"] == pytest.approx(ranking, abs=1e-6)


def test_every_message_is_logged_on_both_sides(captured):
    entries, record = captured["entries"], captured["record"]
    n_clients, n_trained = record["data"]["n_clients"], sum(p["clients"] for p in record["curve"])
    assert n_clients == len(captured["partition"]) == record["data"]["n_train_users"]
    for side in ("server", "client"):
        for direction in ("sent", "received"):
            kinds = [e["message_type"] for e in entries if e["side"] == side and e["direction"] == direction]
            assert kinds.count("query") == n_clients and kinds.count("train") == n_trained, (side, direction)
    assert not [e for e in entries if "error" in e]


def _participants(entries) -> set[int]:
    return {
        int(e["records"]["instruction"]["values"]["client"])
        for e in entries
        if e["side"] == "server" and e["direction"] == "sent" and e["message_type"] == "train"
    }


def test_no_member_message_or_sensitive_phrase_crosses(captured):
    entries, cfg, partition = captured["entries"], captured["cfg"], captured["partition"]
    corpus = generate_jobs(cfg.task.jobs)
    took_part = partition.owners[sorted(_participants(entries))]
    seeking_texts = [
        t
        for m, t in zip(corpus.message_member, corpus.message_text)
        if m in set(took_part) and corpus.member_seeking[m]
    ]
    # the check has something to find: members who reveal they are seeking trained in some round
    assert any(p in t for t in seeking_texts for p in SENSITIVE_PHRASES)
    texts = sorted(set(corpus.message_text.tolist()))  # every member's, trained or not
    assert len(texts) >= 100 and min(len(t) for t in texts) >= 12
    assert _leaks(entries, list(SENSITIVE_PHRASES) + texts) == []
    # positive control: a member's text smuggled into a logged message would be found
    smuggled = json.loads(json.dumps(entries[-1]))
    smuggled.setdefault("records", {})["note"] = {"kind": "config", "values": {"text": seeking_texts[0]}}
    assert _leaks([smuggled], [seeking_texts[0]]) == [seeking_texts[0]]


def test_only_the_global_parameters_and_model_sized_updates_cross(captured):
    entries, record, n_params = captured["entries"], captured["record"], captured["n_params"]
    cfg = captured["cfg"]
    # the model is a function of the config and the postings only: no per-member state
    assert n_params == sum(p.numel() for p in EmojiModel(config=cfg.task, n_classes=N_POSTINGS).parameters())
    for name, record_ in (r for e in entries for r in e.get("records", {}).items()):
        assert name in RECORD_KEYS and set(record_["values"]) <= RECORD_KEYS[name], name
    assert _array_problems(entries, n_params) == []
    member_counts = {
        record["data"]["n_users"],
        record["data"]["n_train_users"],
        record["data"]["n_test_users"],
        record["data"]["n_clients"],
    }
    n_dense = n_params - cfg.task.n_buckets * cfg.task.embedding_dim  # every coordinate but the embedding table
    n_params_sent = n_updates = 0
    for entry in entries:
        records = entry.get("records", {})
        for name, rec in records.items():
            if rec["kind"] != "array":
                continue
            for key, array in rec["values"].items():
                values = np.load(io.BytesIO(base64.b64decode(array["bytes"])), allow_pickle=False)
                assert values.ndim == 1 and len(values) <= n_params, (name, key, values.shape)
                assert len(values) not in member_counts, (name, key, values.shape)
        if "global-params" in records:
            n_params_sent += 1
        if "update" in records:  # a sparse update: the dense layers and the client's own embedding rows
            n_updates += 1
            size = records["update-stats"]["values"]["size"]
            length = records["update"]["values"]["values"]["shape"]
            assert size == n_params and n_dense < length[0] <= n_params
    n_trained = sum(p["clients"] for p in record["curve"])
    assert n_params_sent == n_updates == 2 * n_trained  # each logged on both sides


def test_the_parameter_count_does_not_grow_with_the_number_of_members(captured):
    cfg = resolve(compose_config([*JOBS_FEDERATED, f"task.jobs.n_members={2 * N_MEMBERS}"]))
    data = prepare(cfg, Seeds.from_seed(cfg.seed))
    assert data.corpus.n_users == 2 * N_MEMBERS
    assert sum(p.numel() for p in data.new_model(cfg, Seeds.from_seed(cfg.seed)).parameters()) == captured["n_params"]
