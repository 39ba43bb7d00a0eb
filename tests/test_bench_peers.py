"""The peers' side of the matched workload (benchmarks.peers): same arrays, same model, a real Flower update.

Fast and without Ray or pfl (pfl lives in .venv-bench); no timing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from benchmarks import flower_run, matched, peer_workload

BENCHMARKS = Path(matched.__file__).parent


@pytest.mark.parametrize("seed", [0, 1])
def test_peer_arrays_are_the_matched_arrays(seed):
    ours, theirs = matched.workload_arrays(seed), peer_workload.workload_arrays(seed)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_peer_constants_are_the_matched_ones():
    names = ["N_USERS", "ZIPF", "CAP", "TOKENS", "BUCKETS", "DIM", "HIDDEN", "CLASSES", "SAMPLE_RATE", "BATCH"]
    names += ["LOCAL_LR", "ROUNDS", "NOISE", "CLIP"]
    assert {n: getattr(peer_workload, n) for n in names} == {n: getattr(matched, n) for n in names}
    assert peer_workload.COHORT == 100


def test_peer_model_is_the_matched_model():
    """EmbeddingBag(mean) + MLP: the same parameter count, and the same function on unpadded rows."""
    ours, theirs = matched.new_model(), peer_workload.new_model()
    assert peer_workload.n_parameters(theirs) == matched.n_parameters() == 328_320
    with torch.no_grad():
        theirs.embedding.weight.copy_(ours.embedding.weight)
        for a, b in zip(theirs.mlp.parameters(), ours.mlp.parameters()):
            a.copy_(b)
        tokens = torch.from_numpy(matched.workload_arrays()[0][:64])
        assert torch.allclose(theirs(tokens), ours(tokens), atol=1e-6)


def test_flower_train_returns_a_full_model_update_of_one_user():
    model = peer_workload.new_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord({"server-round": 1})})
    user = int(np.argmax(np.diff(matched.workload_arrays()[2]) > 20))  # a user with a few batches
    reply = flower_run.train_user(content, user)
    arrays = reply["arrays"].to_torch_state_dict()
    assert list(arrays) == list(start)
    assert sum(v.numel() for v in arrays.values()) == matched.n_parameters()
    assert any(not torch.equal(arrays[k], start[k]) for k in start)  # it trained
    metrics = reply["metrics"]
    offsets = matched.workload_arrays()[2]
    assert metrics["num-examples"] == offsets[user + 1] - offsets[user]
    assert metrics[flower_run.WEIGHT_KEY] == 1  # DP-FedAvg: an unweighted mean of the clipped updates


@pytest.mark.parametrize("module", ["peer_workload.py", "pfl_run.py", "flower_run.py"])
def test_peer_modules_do_not_import_sandbox(module):
    """pfl_run runs in .venv-bench (no sandbox there); Ray's workers import flower_run for the ClientApp."""
    tree = ast.parse((BENCHMARKS / module).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "sandbox"]
