"""One corpus table on disk (JSONL, CSV or Parquet) ↔ typed Python columns.

Reading checks every value against its column kind and stops at the first bad one with a
`CorpusError` naming the file, the 1-based data row (and, for text formats, the line) and
the column. Kinds: "str", "bool", "int", "reactions" (a tuple of emoji strings).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.data.normalize import normalize_reaction
from sandbox.data.schema import CorpusError

Columns = dict[str, list]
_WHITESPACE = re.compile(r"\s")
_CSV_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_KIND_NAMES = {"str": "a string", "bool": "a boolean", "int": "an integer", "reactions": "a list of emoji strings"}


@dataclass(frozen=True, eq=False)
class Table:
    """Typed columns of one file; `lines[i]` is the physical line of data row i (text formats)."""

    path: Path
    columns: Columns
    lines: list[int] | None

    def where(self, row: int) -> str:
        """Human location of 0-based data row `row`: 'row 3 (line 4)'."""
        line = f" (line {self.lines[row]})" if self.lines is not None else ""
        return f"row {row + 1}{line}"

    def error(self, row: int, column: str, problem: str) -> CorpusError:
        return CorpusError(f"{self.path}: {self.where(row)}, column {column!r}: {problem}")


# ---- value checks ---------------------------------------------------------------------------


def _is_reaction(value) -> bool:
    return type(value) is str and value != "" and _WHITESPACE.search(value) is None


_TYPED_CHECKS: dict[str, Callable[[object], bool]] = {
    "str": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "int": lambda v: type(v) is int,
    "reactions": lambda v: isinstance(v, (list, tuple)) and all(map(_is_reaction, v)),
}


def _typed_value(kind: str, value):
    """JSON/Parquet value → Python value of `kind`, or raise ValueError."""
    if not _TYPED_CHECKS[kind](value):
        shown = "null" if value is None else repr(value)
        raise ValueError(f"expected {_KIND_NAMES[kind]}, got {shown}")
    return _reactions(value) if kind == "reactions" else value


def _reactions(values) -> tuple[str, ...]:
    """A reactions cell as a tuple, each written as a ``:shortcode:`` read as its emoji
    (``sandbox.data.normalize.normalize_reaction``)."""
    return tuple(normalize_reaction(v) for v in values)


def _csv_value(kind: str, cell: str):
    """CSV cell → Python value of `kind`, or raise ValueError."""
    if kind == "str":
        return cell
    if kind == "bool":
        if cell.strip().lower() not in _CSV_BOOLS:
            raise ValueError(f"expected a boolean (true/false/1/0), got {cell!r}")
        return _CSV_BOOLS[cell.strip().lower()]
    if kind == "int":
        try:
            return int(cell)
        except ValueError:
            raise ValueError(f"expected an integer, got {cell!r}") from None
    return _reactions(cell.split())


def _typed_column(kind: str, values: list) -> list:
    """Bulk version of _typed_value: the whole column, or ValueError if any value is bad."""
    if not all(map(_TYPED_CHECKS[kind], values)):
        raise ValueError(kind)
    return [_reactions(v) for v in values] if kind == "reactions" else values


def _csv_column(kind: str, values: list) -> list:
    return values if kind == "str" else [_csv_value(kind, v) for v in values]


def _convert(
    table_path: Path,
    raw: Columns,
    kinds: dict[str, str],
    lines: list[int] | None,
    typed: bool,
    notes: dict[str, str] | None = None,
) -> Table:
    """Check and convert each raw column to its kind; `notes[name]` is appended to errors."""
    convert_column = _typed_column if typed else _csv_column
    convert_value = _typed_value if typed else _csv_value
    table = Table(path=table_path, columns={}, lines=lines)
    for name, kind in kinds.items():
        values = raw[name]
        try:
            table.columns[name] = convert_column(kind, values)
        except ValueError:
            for row, value in enumerate(values):  # slow path: find the first bad row
                try:
                    convert_value(kind, value)
                except ValueError as error:
                    note = (notes or {}).get(name, "")
                    raise table.error(row, name, f"{error}{note}") from None
            raise
    return table


# ---- reading --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"{path}: empty file (no data rows)")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise CorpusError(f"{path}: line {line}: not valid UTF-8 (byte 0x{byte:02x})") from None


def _parse_json_lines(path: Path, texts: list[str], lines: list[int]) -> list[dict]:
    """One JSON object per line; parsed as one array when possible (one C call, fast)."""
    try:
        records = json.loads("[" + ",".join(texts) + "]")
        if len(records) == len(texts) and all(type(r) is dict for r in records):
            return records
    except json.JSONDecodeError:
        pass
    for row, (text, line_number) in enumerate(zip(texts, lines)):  # slow path: locate
        where = f"{path}: row {row + 1} (line {line_number})"
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{where}: malformed JSON ({error.msg} at character {error.colno})") from None
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
    raise AssertionError("unreachable: the array parse failed but every line parsed")


def read_jsonl(path: Path, kinds: dict[str, str]) -> Table:
    texts, lines = [], []
    for line_number, text in enumerate(_read_text(path).split("\n"), start=1):
        if text.strip():
            texts.append(text)
            lines.append(line_number)
    records = _parse_json_lines(path, texts, lines)
    raw: Columns = {}
    for name in kinds:
        try:
            raw[name] = [record[name] for record in records]
        except KeyError:
            row = next(i for i, record in enumerate(records) if name not in record)
            raise CorpusError(f"{path}: row {row + 1} (line {lines[row]}), column {name!r}: missing column") from None
    return _convert(path, raw, kinds, lines, typed=True)


def read_csv(path: Path, kinds: dict[str, str]) -> Table:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
    except csv.Error as error:
        raise CorpusError(f"{path}: line 1 (header): malformed CSV ({error})") from None
    for name in kinds:
        if name not in header:
            raise CorpusError(
                f"{path}: line 1 (header), column {name!r}: missing column (header has {', '.join(header)})"
            )
    rows, lines, line_before = [], [], reader.line_num
    try:
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise CorpusError(
                        f"{path}: row {len(rows) + 1} (line {line_before + 1}): "
                        f"expected {len(header)} fields, got {len(row)}"
                    )
                rows.append(row)
                lines.append(line_before + 1)
            line_before = reader.line_num
    except csv.Error as error:
        raise CorpusError(f"{path}: line {reader.line_num}: malformed CSV ({error})") from None
    if not rows:
        raise CorpusError(f"{path}: empty file (header but no data rows)")
    raw = {name: [row[header.index(name)] for row in rows] for name in kinds}
    return _convert(path, raw, kinds, lines, typed=False)


def read_parquet(path: Path, kinds: dict[str, str]) -> Table:
    if path.stat().st_size == 0:
        raise CorpusError(f"{path}: empty file (no data rows)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise CorpusError(f"{path}: not a readable Parquet file ({error})") from None
    if table.num_rows == 0:
        raise CorpusError(f"{path}: empty file (no data rows)")
    for name in kinds:
        if name not in table.column_names:
            raise CorpusError(f"{path}: column {name!r}: missing column (file has {', '.join(table.column_names)})")
    raw = {name: table.column(name).to_pylist() for name in kinds}
    notes = {name: f" (Parquet type {table.schema.field(name).type})" for name in kinds}
    return _convert(path, raw, kinds, None, typed=True, notes=notes)


READERS: dict[str, Callable[[Path, dict[str, str]], Table]] = {
    "jsonl": read_jsonl,
    "csv": read_csv,
    "parquet": read_parquet,
}


# ---- writing --------------------------------------------------------------------------------


def _check_reactions(path: Path, columns: Columns) -> None:
    for row, reactions in enumerate(columns.get("reactions", [])):
        if not all(map(_is_reaction, reactions)):
            raise CorpusError(
                f"{path}: row {row + 1}, column 'reactions': {reactions!r} holds an "
                "empty or whitespace-containing reaction"
            )


def write_jsonl(path: Path, columns: Columns) -> None:
    names = list(columns)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for values in zip(*columns.values()):
            f.write(json.dumps(dict(zip(names, values)), ensure_ascii=False) + "\n")


def write_csv(path: Path, columns: Columns) -> None:
    def cell(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return " ".join(value) if isinstance(value, tuple) else str(value)

    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")  # \r\n so a lone \r in a text is quoted
        writer.writerow(list(columns))
        writer.writerows([cell(v) for v in row] for row in zip(*columns.values()))


def write_parquet(path: Path, columns: Columns) -> None:
    types = {"opted_out": pa.bool_(), "timestamp": pa.int64(), "reactions": pa.list_(pa.string())}
    arrays = {name: pa.array(values, type=types.get(name, pa.string())) for name, values in columns.items()}
    pq.write_table(pa.table(arrays), path)


WRITERS: dict[str, Callable[[Path, Columns], None]] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
    "parquet": write_parquet,
}


def write_table(path: Path, columns: Columns, fmt: str) -> None:
    _check_reactions(path, columns)
    try:
        WRITERS[fmt](path, columns)
    except UnicodeEncodeError as error:
        raise CorpusError(f"{path}: text not encodable as UTF-8 ({error.reason})") from None
