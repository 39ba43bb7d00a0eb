"""Corpus directories: round trips in all formats, atomic writes, and errors naming file/row/column."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.data import FORMATS, Corpus, CorpusError, load_corpus, load_manifest, write_corpus

from .test_schema import tiny_fields

# The corpus of test_schema.tiny_fields, written by hand in each text format.
CSV_FILES = {
    "workspaces.csv": "workspace_id,opted_out\nws-a,false\nws-b,TRUE\n",
    "users.csv": "user_id,workspace_id,opted_out\nu1,ws-a,0\nu2,ws-a,1\nu3,ws-b,False\n",
    "messages.csv": (
        "message_id,user_id,channel,timestamp,text,reactions\n"
        "m1,u1,#general,100,hello,👍\n"
        'm2,u1,#random,101,"with, comma",👍 🎉\n'
        "m3,u2,#general,102,,\n"
        "m4,u3,#general,103,fire,🔥\n"
    ),
}
JSONL_FILES = {
    "workspaces.jsonl": '{"workspace_id": "ws-a", "opted_out": false}\n{"workspace_id": "ws-b", "opted_out": true}\n',
    "users.jsonl": '{"user_id": "u1", "workspace_id": "ws-a", "opted_out": false}\n'
    '{"user_id": "u2", "workspace_id": "ws-a", "opted_out": true}\n'
    '{"user_id": "u3", "workspace_id": "ws-b", "opted_out": false}\n',
    "messages.jsonl": (
        '{"message_id": "m1", "user_id": "u1", "channel": "#general", "timestamp": 100, "text": "hello", "reactions": ["👍"]}\n'
        '{"message_id": "m2", "user_id": "u1", "channel": "#random", "timestamp": 101, "text": "with, comma", "reactions": ["👍", "🎉"]}\n'
        '{"message_id": "m3", "user_id": "u2", "channel": "#general", "timestamp": 102, "text": "", "reactions": []}\n'
        '{"message_id": "m4", "user_id": "u3", "channel": "#general", "timestamp": 103, "text": "fire", "reactions": ["🔥"]}\n'
    ),
}


def write_files(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (directory / name).write_bytes(data)
    return directory


def tiny_corpus() -> Corpus:
    return Corpus(**tiny_fields())


# ---- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("files", [CSV_FILES, JSONL_FILES], ids=["csv", "jsonl"])
def test_hand_written_files_load_to_the_expected_corpus(tmp_path, files):
    corpus = load_corpus(write_files(tmp_path / "c", files))
    assert corpus.fingerprint() == tiny_corpus().fingerprint()


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_corpus_round_trips_exactly(tmp_path, fmt, small_corpus, small_manifest):
    path = write_corpus(small_corpus, tmp_path / "corpus", fmt=fmt, manifest=small_manifest)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["canaries.json", f"workspaces.{fmt}", f"users.{fmt}", f"messages.{fmt}"]
    )
    assert load_corpus(path).fingerprint() == small_corpus.fingerprint()
    assert load_manifest(path) == small_manifest
    assert os.listdir(tmp_path) == ["corpus"]  # no staging directory left behind


def test_manifest_is_optional(tmp_path):
    path = write_corpus(tiny_corpus(), tmp_path / "c", fmt="csv")
    assert load_manifest(path) is None
    assert load_corpus(path).fingerprint() == tiny_corpus().fingerprint()


_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_reaction = st.sampled_from(["👍", "❤️", "👍🏽", "👨‍👩‍👧", "🇫🇷", ":custom:", "é"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_texts, min_size=1, max_size=6), data=st.data())
def test_arbitrary_texts_round_trip_in_every_format(tmp_path_factory, texts, data):
    n = len(texts)
    fields = dict(
        workspace_ids=np.array([data.draw(_texts) + "w"], dtype=object),
        workspace_opted_out=np.array([True]),
        user_ids=np.array(['u,"1"\n'], dtype=object),
        user_workspace=np.zeros(1, dtype=np.int64),
        user_opted_out=np.array([False]),
        message_ids=np.array([f"m{i}" for i in range(n)], dtype=object),
        message_user=np.zeros(n, dtype=np.int64),
        channels=np.array(["#a\r"] * n, dtype=object),
        timestamps=np.array(data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n))),
        texts=np.array(texts, dtype=object),
        reactions=tuple(tuple(data.draw(st.lists(_reaction, max_size=3))) for _ in range(n)),
    )
    corpus = Corpus(**fields)
    root = tmp_path_factory.mktemp("rt")
    for fmt in FORMATS:
        assert load_corpus(write_corpus(corpus, root / fmt, fmt=fmt)).fingerprint() == corpus.fingerprint()


# ---- atomic, non-overwriting writes ---------------------------------------------------------


def test_existing_non_empty_directory_is_refused_and_untouched(tmp_path):
    target = write_files(tmp_path / "c", {"notes.txt": "keep me"})
    with pytest.raises(CorpusError, match="refusing to overwrite"):
        write_corpus(tiny_corpus(), target, fmt="jsonl")
    assert os.listdir(target) == ["notes.txt"] and (target / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["c"]


def test_existing_empty_directory_is_filled(tmp_path):
    (tmp_path / "c").mkdir()
    write_corpus(tiny_corpus(), tmp_path / "c", fmt="parquet")
    assert load_corpus(tmp_path / "c").fingerprint() == tiny_corpus().fingerprint()


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="xml"):
        write_corpus(tiny_corpus(), tmp_path / "c", fmt="xml")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_leaves_nothing_behind(tmp_path, fmt):
    fields = tiny_fields()
    fields["reactions"] = (("👍",), ("👍", "🎉"), (), ("two words",))
    with pytest.raises(CorpusError, match="row 4, column 'reactions'"):
        write_corpus(Corpus(**fields), tmp_path / "c", fmt=fmt)
    assert os.listdir(tmp_path) == []


# ---- malformed input ------------------------------------------------------------------------


def _edit(name: str, old: str | bytes, new: str | bytes):
    def apply(files: dict) -> dict:
        content = files[name]
        if isinstance(old, bytes):
            content = content.encode("utf-8") if isinstance(content, str) else content
        assert old in content, f"test setup: {old!r} not in {name}"
        return {**files, name: content.replace(old, new, 1)}

    return apply


def _replace(name: str, content: str | bytes):
    return lambda files: {**files, name: content}


MALFORMED = [
    # (case id, base files, edit, fragments the error must contain)
    (
        "csv-missing-column",
        CSV_FILES,
        _replace("users.csv", "user_id,workspace_id\nu1,ws-a\n"),
        ["users.csv", "'opted_out'", "missing column"],
    ),
    (
        "csv-timestamp-abc",
        CSV_FILES,
        _edit("messages.csv", "u2,#general,102", "u2,#general,abc"),
        ["messages.csv", "row 3 (line 4)", "'timestamp'", "'abc'"],
    ),
    (
        "csv-opted-out-maybe",
        CSV_FILES,
        _edit("users.csv", "u2,ws-a,1", "u2,ws-a,maybe"),
        ["users.csv", "row 2 (line 3)", "'opted_out'", "'maybe'"],
    ),
    ("csv-non-utf8", CSV_FILES, _edit("messages.csv", b"fire", b"fi\xffre"), ["messages.csv", "line 5", "UTF-8"]),
    ("csv-zero-bytes", CSV_FILES, _replace("workspaces.csv", b""), ["workspaces.csv", "empty"]),
    ("csv-header-only", CSV_FILES, _replace("users.csv", "user_id,workspace_id,opted_out\n"), ["users.csv", "empty"]),
    (
        "csv-duplicate-id",
        CSV_FILES,
        _edit("users.csv", "u3,ws-b", "u1,ws-b"),
        ["users.csv", "row 1 (line 2)", "row 3 (line 4)", "'user_id'", "duplicate"],
    ),
    (
        "csv-unknown-workspace",
        CSV_FILES,
        _edit("users.csv", "u3,ws-b", "u3,ws-z"),
        ["users.csv", "row 3 (line 4)", "'workspace_id'", "'ws-z'", "workspaces.csv"],
    ),
    (
        "csv-unknown-user",
        CSV_FILES,
        _edit("messages.csv", "m4,u3", "m4,u9"),
        ["messages.csv", "row 4 (line 5)", "'user_id'", "'u9'"],
    ),
    (
        "csv-field-count",
        CSV_FILES,
        _edit("messages.csv", "hello,👍", "hello"),
        ["messages.csv", "row 1 (line 2)", "fields"],
    ),
    (
        "csv-multiline-text-shifts-lines",
        CSV_FILES,
        lambda f: _edit("messages.csv", "u2,#general,102", "u2,#general,x")(
            _edit("messages.csv", '"with, comma"', '"with\nnewline"')(f)
        ),
        ["messages.csv", "row 3 (line 5)", "'timestamp'"],
    ),
    (
        "jsonl-missing-key",
        JSONL_FILES,
        _edit("users.jsonl", '"workspace_id": "ws-a", "opted_out": true', '"workspace_id": "ws-a"'),
        ["users.jsonl", "row 2 (line 2)", "'opted_out'", "missing column"],
    ),
    (
        "jsonl-timestamp-abc",
        JSONL_FILES,
        _edit("messages.jsonl", '"timestamp": 102', '"timestamp": "abc"'),
        ["messages.jsonl", "row 3 (line 3)", "'timestamp'", "'abc'"],
    ),
    (
        "jsonl-timestamp-float",
        JSONL_FILES,
        _edit("messages.jsonl", '"timestamp": 102', '"timestamp": 102.5'),
        ["messages.jsonl", "row 3 (line 3)", "'timestamp'"],
    ),
    (
        "jsonl-opted-out-maybe",
        JSONL_FILES,
        _edit("users.jsonl", '"opted_out": true', '"opted_out": "maybe"'),
        ["users.jsonl", "row 2 (line 2)", "'opted_out'", "'maybe'"],
    ),
    (
        "jsonl-null-text",
        JSONL_FILES,
        _edit("messages.jsonl", '"text": "fire"', '"text": null'),
        ["messages.jsonl", "row 4 (line 4)", "'text'", "null"],
    ),
    (
        "jsonl-reactions-not-list",
        JSONL_FILES,
        _edit("messages.jsonl", '["🔥"]', '"🔥"'),
        ["messages.jsonl", "row 4 (line 4)", "'reactions'"],
    ),
    ("jsonl-non-utf8", JSONL_FILES, _edit("users.jsonl", b'"u2"', b'"u\xc3\x28"'), ["users.jsonl", "line 2", "UTF-8"]),
    ("jsonl-zero-bytes", JSONL_FILES, _replace("messages.jsonl", b""), ["messages.jsonl", "empty"]),
    ("jsonl-blank-lines-only", JSONL_FILES, _replace("messages.jsonl", "\n\n  \n"), ["messages.jsonl", "empty"]),
    (
        "jsonl-malformed-line",
        JSONL_FILES,
        _edit("users.jsonl", '"u2", "workspace_id"', '"u2" "workspace_id"'),
        ["users.jsonl", "row 2 (line 2)", "malformed JSON"],
    ),
    (
        "jsonl-not-an-object",
        JSONL_FILES,
        _replace("workspaces.jsonl", '{"workspace_id": "ws-a", "opted_out": false}\n[1, 2]\n'),
        ["workspaces.jsonl", "row 2 (line 2)", "JSON object"],
    ),
    (
        "jsonl-two-objects-on-a-line",
        JSONL_FILES,
        _replace(
            "workspaces.jsonl",
            '{"workspace_id": "ws-a", "opted_out": false}, {"workspace_id": "ws-b", "opted_out": true}\n',
        ),
        ["workspaces.jsonl", "row 1 (line 1)", "malformed JSON"],
    ),
    (
        "jsonl-blank-line-shifts-lines",
        JSONL_FILES,
        lambda f: _edit("messages.jsonl", '"timestamp": 102', '"timestamp": "x"')(
            {**f, "messages.jsonl": "\n" + f["messages.jsonl"]}
        ),
        ["messages.jsonl", "row 3 (line 4)", "'timestamp'"],
    ),
    (
        "jsonl-duplicate-id",
        JSONL_FILES,
        _edit("messages.jsonl", '"message_id": "m4"', '"message_id": "m2"'),
        ["messages.jsonl", "row 2 (line 2)", "row 4 (line 4)", "'message_id'", "duplicate"],
    ),
    (
        "jsonl-unknown-user",
        JSONL_FILES,
        _edit("messages.jsonl", '"m1", "user_id": "u1"', '"m1", "user_id": "nobody"'),
        ["messages.jsonl", "row 1 (line 1)", "'user_id'", "'nobody'", "users.jsonl"],
    ),
]


@pytest.mark.parametrize("case, base, edit, fragments", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_text_input_names_file_row_and_column(tmp_path, case, base, edit, fragments):
    directory = write_files(tmp_path / "c", edit(dict(base)))
    with pytest.raises(CorpusError) as error:
        load_corpus(directory)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} missing from: {error.value}"


def _parquet_corpus(tmp_path: Path) -> Path:
    return write_corpus(tiny_corpus(), tmp_path / "c", fmt="parquet")


def _rewrite(path: Path, edit) -> None:
    pq.write_table(edit(pq.read_table(path)), path)


def _set_column(name: str, values, type_=None):
    def edit(table: pa.Table) -> pa.Table:
        return table.set_column(table.column_names.index(name), name, pa.array(values, type=type_))

    return edit


PARQUET_MALFORMED = [
    (
        "missing-column",
        "users.parquet",
        lambda t: t.drop_columns(["opted_out"]),
        ["users.parquet", "'opted_out'", "missing column"],
    ),
    (
        "timestamp-abc",
        "messages.parquet",
        _set_column("timestamp", ["100", "101", "abc", "103"]),
        ["messages.parquet", "row 1", "'timestamp'"],
    ),
    (
        "null-user",
        "messages.parquet",
        _set_column("user_id", ["u1", None, "u2", "u3"]),
        ["messages.parquet", "row 2", "'user_id'", "null"],
    ),
    (
        "opted-out-as-int",
        "workspaces.parquet",
        _set_column("opted_out", [0, 1]),
        ["workspaces.parquet", "row 1", "'opted_out'"],
    ),
    ("zero-rows", "workspaces.parquet", lambda t: t.slice(0, 0), ["workspaces.parquet", "empty"]),
    (
        "duplicate-id",
        "users.parquet",
        _set_column("user_id", ["u1", "u2", "u2"]),
        ["users.parquet", "row 2", "row 3", "'user_id'", "duplicate"],
    ),
    (
        "unknown-workspace",
        "users.parquet",
        _set_column("workspace_id", ["ws-a", "ws-q", "ws-b"]),
        ["users.parquet", "row 2", "'workspace_id'", "'ws-q'"],
    ),
]


@pytest.mark.parametrize("case, name, edit, fragments", PARQUET_MALFORMED, ids=[m[0] for m in PARQUET_MALFORMED])
def test_malformed_parquet_names_file_row_and_column(tmp_path, case, name, edit, fragments):
    directory = _parquet_corpus(tmp_path)
    _rewrite(directory / name, edit)
    with pytest.raises(CorpusError) as error:
        load_corpus(directory)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} missing from: {error.value}"


@pytest.mark.parametrize("content, fragment", [(b"", "empty"), (b"not parquet at all", "Parquet")])
def test_unreadable_parquet_is_named(tmp_path, content, fragment):
    directory = _parquet_corpus(tmp_path)
    (directory / "messages.parquet").write_bytes(content)
    with pytest.raises(CorpusError, match=fragment) as error:
        load_corpus(directory)
    assert "messages.parquet" in str(error.value)


@pytest.mark.parametrize(
    "files, fragments",
    [
        (
            {
                "workspaces.csv": CSV_FILES["workspaces.csv"],
                "users.jsonl": JSONL_FILES["users.jsonl"],
                "messages.csv": CSV_FILES["messages.csv"],
            },
            ["mixed formats", "users.jsonl", "workspaces.csv"],
        ),
        (
            {"workspaces.csv": CSV_FILES["workspaces.csv"], "users.csv": CSV_FILES["users.csv"]},
            ["missing messages.csv"],
        ),
        ({"notes.txt": "hello"}, ["no corpus files"]),
    ],
)
def test_directory_layout_errors(tmp_path, files, fragments):
    directory = write_files(tmp_path / "c", files)
    with pytest.raises(CorpusError) as error:
        load_corpus(directory)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_missing_directory_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="not a directory"):
        load_corpus(tmp_path / "nowhere")


def test_csv_accepts_bom_crlf_and_case_insensitive_booleans(tmp_path):
    files = {name: ("\ufeff" + text).replace("\n", "\r\n") for name, text in CSV_FILES.items()}
    files["workspaces.csv"] = files["workspaces.csv"].replace("false", "FaLsE")
    corpus = load_corpus(write_files(tmp_path / "c", files))
    assert corpus.fingerprint() == tiny_corpus().fingerprint()
