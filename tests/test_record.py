"""The typed run record (`sandbox.record`): real records round-trip, bad ones name the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sandbox.config import resolve
from sandbox.record import RecordError, RunRecord, load, markdown, save
from sandbox.run import run
from tests.conftest import TINY, compose_config

REPO = Path(__file__).resolve().parent.parent
SMALL_JOBS = [
    "task=jobs",
    "task.jobs.n_members=400",
    "task.jobs.n_postings=60",
    "task.jobs.seeking_rate=0.3",
    "task.n_buckets=1024",
    "task.embedding_dim=16",
    "task.hidden_dim=16",
]
KINDS = {
    "dpsgd": ["privacy=dpsgd", "privacy.target_epsilon=4"],
    "dpfedavg": ["mode=federated", "federation.rounds=2", "privacy=dpfedavg", "privacy.target_epsilon=8"],
    "jobs_suggestions": [*SMALL_JOBS, "privacy=none", "audit=suggestions"],
    "loss": ["privacy=dpsgd", "privacy.target_epsilon=4", "audit=loss"],
}


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("records")
    dirs = {}
    for name, overrides in KINDS.items():
        cfg = compose_config([*TINY, *overrides])
        dirs[name] = root / name
        dirs[name].mkdir()
        run(resolve(cfg), out_dir=dirs[name], resolved_config=OmegaConf.to_container(cfg, resolve=True))
    return dirs


@pytest.mark.parametrize("kind", list(KINDS))
def test_real_records_round_trip(run_dirs, kind):
    data = json.loads((run_dirs[kind] / "record.json").read_text())
    record = load(run_dirs[kind])
    assert record.to_json() == data
    assert json.dumps(record.to_json()) == json.dumps(data)  # key order kept too
    assert RunRecord.from_json(data).to_json() == data


def test_typed_sections_read_what_the_writers_wrote(run_dirs):
    central, fed = load(run_dirs["dpsgd"]), load(run_dirs["dpfedavg"])
    assert central.privacy.mechanism == "dpsgd" and central.privacy.unit == "example"
    assert 0 < central.privacy.epsilon <= 4 and central.curve[-1].step == central.privacy.steps
    assert fed.mode == "federated" and fed.privacy.unit == "user" and fed.curve[-1].round == 2
    assert fed.data.n_clients > 0 and fed.privacy.extra["clipping"] == "fixed"
    assert central.audit is None and "audit" not in central.to_json()
    jobs, loss = load(run_dirs["jobs_suggestions"]), load(run_dirs["loss"])
    assert jobs.privacy.epsilon is None and jobs.audit.attack == "suggestions" and jobs.metrics.ranking
    assert jobs.metrics.top_k() == "top10"
    assert loss.audit.attack == "loss" and loss.audit.get("auc") == loss.to_json()["audit"]["auc"]
    with pytest.raises(TypeError):
        central.metrics.extra["top5"] = 1.0  # read-only


def test_save_writes_what_load_reads(run_dirs, tmp_path):
    record = load(run_dirs["dpfedavg"])
    path = save(tmp_path, record)
    assert path == tmp_path / "record.json" and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert load(tmp_path) == record and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(tmp_path: Path, data) -> Path:
    (tmp_path / "record.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["privacy"].update(epsilon="abc"), "privacy.epsilon: expected a number or null, got 'abc'"),
        (lambda d: d.pop("metrics"), "metrics: missing from the record"),
        (lambda d: d["privacy"].pop("steps"), "privacy.steps: missing from the record"),
        (lambda d: d.update(schema_version=2), "schema_version: 2 is not supported"),
        (lambda d: d.update(seed=True), "seed: expected a whole number, got True"),
        (lambda d: d["curve"][0].update(step="x"), "curve[0].step: expected a whole number, got 'x'"),
        (lambda d: d.update(audit=[]), "audit: expected an object, got []"),
        (lambda d: d["model"].update(sha256=None), "model.sha256: expected text, got None"),
    ],
)
def test_bad_records_name_the_file_and_the_key(run_dirs, tmp_path, change, expected):
    data = json.loads((run_dirs["dpsgd"] / "record.json").read_text())
    change(data)
    with pytest.raises(RecordError) as err:
        load(_write(tmp_path, data))
    assert str(err.value) == f"{tmp_path / 'record.json'}: {expected}" or str(err.value).startswith(
        f"{tmp_path / 'record.json'}: {expected}"
    ), str(err.value)


def test_missing_file_and_invalid_json_name_the_file(tmp_path):
    with pytest.raises(RecordError, match=r"record\.json: missing"):
        load(tmp_path)
    with pytest.raises(RecordError, match=r"record\.json: not a readable JSON run record"):
        load(_write(tmp_path, "{not json"))
    with pytest.raises(RecordError, match=r"\(top level\): expected an object"):
        load(_write(tmp_path, "[1, 2]"))
    assert issubclass(RecordError, ValueError)


def test_docs_record_md_is_generated_from_the_dataclasses():
    text = (REPO / "docs" / "record.md").read_text(encoding="utf-8")
    assert text == markdown(), "docs/record.md is out of date: python -m sandbox.record --markdown > docs/record.md"
    for dotted in ("`privacy.epsilon`", "`curve[].step`", "`audit.result`", "`model.sha256`", "`timing.*`"):
        assert dotted in text


def test_the_record_layer_imports_no_privacy_layer():
    import ast

    for path in (REPO / "sandbox" / "record").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    assert not name.startswith("sandbox.") or name.startswith(
                        ("sandbox.io", "sandbox.config", "sandbox.record")
                    ), f"{path.name} imports {name}"


def test_summary_reads_typed_records_and_exits_3_naming_a_bad_one(run_dirs, tmp_path, capsys):
    from sandbox.summary import main

    assert main([str(run_dirs["dpsgd"].parent)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in KINDS)
    data = json.loads((run_dirs["dpsgd"] / "record.json").read_text())
    data["privacy"]["epsilon"] = "abc"
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad, data)
    assert main([str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err == f"error: {bad / 'record.json'}: privacy.epsilon: expected a number or null, got 'abc'\n"
    assert main([str(tmp_path / "nowhere")]) == 3 and "nowhere: no such directory" in capsys.readouterr().err
