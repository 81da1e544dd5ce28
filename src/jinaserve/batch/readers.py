"""Input readers that can start again where a job stopped: from a byte offset (JSONL, plain text) or a row
(Parquet). Blank lines are not inputs and are skipped (they do not count as rows)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import InvalidInputError


def iter_lines(path: Path, offset: int = 0, line_no: int = 0) -> Iterator[tuple[int, bytes, int]]:
    """(line number among non-blank lines, the line, byte offset after it), from `offset`."""
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            offset += len(raw)
            if raw.strip():
                yield line_no, raw, offset
                line_no += 1


def input_format(path: Path, explicit: str | None = None) -> str:
    """jsonl | text | parquet, from `explicit` or the file name (.jsonl/.json/.ndjson, .parquet, else text)."""
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "text"


@dataclass
class Row:
    index: int
    text: str | None
    id: Any = None
    error: str | None = None


def _jsonl_row(index: int, raw: bytes, text_field: str, id_field: str) -> Row:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Row(index, None, error=f"row {index}: not valid JSON")
    if isinstance(obj, str):
        return Row(index, obj)
    if isinstance(obj, dict):
        text = obj.get(text_field)
        if text is None and isinstance(obj.get("body"), dict):  # a Jina / OpenAI batch line
            text = obj["body"].get("input")
        rid = obj.get(id_field, obj.get("custom_id"))
        if isinstance(text, str):
            return Row(index, text, rid)
        return Row(index, None, rid, error=f"row {index}: no string field {text_field!r}")
    return Row(index, None, error=f"row {index}: a JSON line must be a string or an object")


def iter_rows(path: Path, fmt: str, *, text_field: str = "text", id_field: str = "id", start_row: int = 0,
              offset: int = 0) -> Iterator[tuple[Row, int]]:
    """(row, position after it) from `start_row` / `offset`; the position is a byte offset for line files and
    the next row number for Parquet."""
    if fmt == "parquet":
        yield from _parquet_rows(path, text_field, id_field, start_row)
        return
    for line_no, raw, next_offset in iter_lines(path, offset, start_row):
        if fmt == "jsonl":
            yield _jsonl_row(line_no, raw, text_field, id_field), next_offset
        else:
            yield Row(line_no, raw.decode("utf-8", errors="replace").rstrip("\r\n")), next_offset


def _parquet_rows(path: Path, text_field: str, id_field: str, start_row: int) -> Iterator[tuple[Row, int]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInputError("Parquet input needs pyarrow: pip install 'jinaserve[batch]'") from None
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if text_field not in names:
        raise InvalidInputError(f"{path} has no column {text_field!r} (columns: {', '.join(names)}); "
                                f"choose one with --text-field")
    columns = [text_field] + ([id_field] if id_field in names and id_field != text_field else [])
    row = 0
    for group in range(pf.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        if row + n <= start_row:  # whole row group already done
            row += n
            continue
        table = pf.read_row_group(group, columns=columns)
        texts = table.column(text_field).to_pylist()
        ids = table.column(id_field).to_pylist() if len(columns) > 1 else [None] * len(texts)
        for text, rid in zip(texts, ids, strict=True):
            if row >= start_row:
                if isinstance(text, str):
                    yield Row(row, text, rid), row + 1
                else:
                    yield Row(row, None, rid, error=f"row {row}: {text_field!r} is not a string"), row + 1
            row += 1


def count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for raw in f if raw.strip())
