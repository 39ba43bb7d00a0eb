"""`python -m sandbox.data`: generate + validate, and clean one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.data import CanaryManifest, load_corpus
from sandbox.data.__main__ import main

SMALL_ARGS = ["--n-users", "120", "--n-workspaces", "6", "--seed", "3"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox.data", *args], capture_output=True, text=True, timeout=120)


def test_generate_then_validate_agree_on_the_fingerprint(tmp_path):
    out = tmp_path / "corpus"
    generated = run_cli("generate", "--out", str(out), "--format", "jsonl", *SMALL_ARGS)
    assert generated.returncode == 0, generated.stderr
    assert len(generated.stdout.strip().splitlines()) == 1
    validated = run_cli("validate", str(out))
    assert validated.returncode == 0, validated.stderr
    fingerprint = load_corpus(out).fingerprint()
    assert fingerprint in generated.stdout and fingerprint in validated.stdout
    assert "120 users" in validated.stdout and "6 workspaces" in validated.stdout
    manifest = CanaryManifest.from_json(json.loads((out / "canaries.json").read_text()))
    assert len(manifest.inserted) == 10


def test_bad_corpus_exits_2_with_one_clean_error_line(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "workspaces.csv").write_text("workspace_id,opted_out\nws-a,maybe\n")
    (corpus / "users.csv").write_text("user_id,workspace_id,opted_out\nu1,ws-a,false\n")
    (corpus / "messages.csv").write_text("message_id,user_id,channel,timestamp,text,reactions\n")
    result = run_cli("validate", str(corpus))
    assert result.returncode == 3
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert "workspaces.csv" in result.stderr and "row 1 (line 2)" in result.stderr
    assert result.stdout == ""


def test_refused_overwrite_exits_2_and_leaves_directory_untouched(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "precious.txt").write_text("do not touch")
    result = run_cli("generate", "--out", str(out), "--format", "csv", *SMALL_ARGS)
    assert result.returncode == 3
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "do not touch"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "command"),
        (["frobnicate"], "frobnicate"),
        (["generate", "--out", "{tmp}/x", "--format", "xml"], "xml"),
        (["generate", "--format", "csv"], "--out"),
        (["generate", "--out", "{tmp}/x", "--format", "csv", "--n-users", "abc"], "abc"),
        (["generate", "--out", "{tmp}/x", "--format", "csv", "--n-users", "3", "--n-workspaces", "5"], "n_users"),
        (["generate", "--out", "{tmp}/x", "--format", "csv", "--seed", "-1"], "seed"),
        (["validate", "{tmp}/missing"], "not a directory"),
        (["validate", "{tmp}"], "no corpus files"),
    ],
)
def test_bad_arguments_exit_2_with_error_prefix(tmp_path, capsys, argv, fragment):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse exits by itself
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 3
    assert captured.err.startswith("error:") and fragment in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "x").exists()
