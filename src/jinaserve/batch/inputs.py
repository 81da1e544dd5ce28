"""A job's input, made durable before the job runs: every server job reads one JSONL file in the store.

- Jina inline `input` and `input_url` content are normalised to lines `{"custom_id", "body": {"input"}}`
  (hosted lines pass through; a plain string, `{"text"}` / `{"image"}` object or non-JSON text line becomes
  the `input` of a line whose custom_id is its index).
- OpenAI uploads are validated as OpenAI does before a batch starts: one JSON object per line with a unique
  `custom_id`, `method` POST, `url` equal to the batch's endpoint and an object `body`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..errors import FieldError, ValidationFailedError
from .readers import iter_lines

MAX_REPORTED_ERRORS = 100


def load_line(raw: bytes | str) -> Any:
    """One JSON line, as the online endpoints read a body (Python's json): orjson first (fast), then json for
    what orjson refuses but JSON allows, e.g. a lone-surrogate escape "\\ud800" — so such a line runs and fails
    alone with the online endpoint's error instead of being taken for something else. ValueError if not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dump_line(obj: Any) -> bytes:
    """One stored input line, losslessly: what orjson refuses (lone surrogates, integers beyond 64 bits, as a
    client may send them inline) is written as JSON escapes, which `load_line` reads back unchanged."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return json.dumps(obj, ensure_ascii=True).encode()


def _jina_line(index: int, item: Any) -> dict[str, Any]:
    if isinstance(item, dict) and isinstance(item.get("body"), dict):
        return {"custom_id": str(item.get("custom_id", index)), "body": item["body"]}
    return {"custom_id": str(index), "body": {"input": item}}


def write_jina_lines(items: Iterable[Any], dest: Path) -> int:
    n = 0
    with open(dest, "wb") as f:
        for n, item in enumerate(items, start=1):
            f.write(dump_line(_jina_line(n - 1, item)) + b"\n")
    return n


def normalise_jina_file(src: Path, dest: Path, max_lines: int) -> int:
    """Downloaded input_url content → Jina lines in `dest`; the number of lines."""

    def items() -> Iterable[Any]:
        for line_no, raw, _ in iter_lines(src):
            if line_no >= max_lines:
                raise ValidationFailedError([FieldError("body -> input_url", f"the file has more than {max_lines} "
                                                        f"lines (batch_max_lines)", "too_long", None)])
            try:
                value = load_line(raw)
            except ValueError:
                value = None
            if isinstance(value, dict | list | str):
                yield value
            else:  # not JSON, or a bare number / true / false / null: a line of a plain-text file
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")

    return write_jina_lines(items(), dest)


def validate_openai_file(path: Path, endpoint: str, max_lines: int) -> tuple[int, list[dict[str, Any]]]:
    """(number of requests, OpenAI batch `errors` entries {code, message, param, line})."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    total = 0

    def bad(line: int, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append({"code": code, "message": message, "param": param, "line": line})

    for line_no, raw, _ in iter_lines(path):
        total += 1
        line = line_no + 1
        if total > max_lines:
            bad(line, "too_many_requests", f"The file has more than {max_lines} requests (batch_max_lines).")
            break
        try:
            obj = load_line(raw)
        except ValueError:
            bad(line, "invalid_json_line", "This line is not valid JSON.")
            continue
        if not isinstance(obj, dict):
            bad(line, "invalid_request", "Each line must be a JSON object.")
            continue
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            bad(line, "missing_required_parameter", "Each request needs a string custom_id.", "custom_id")
        elif custom_id in seen:
            bad(line, "duplicate_custom_id", f"The custom_id {custom_id!r} is used by an earlier line; custom_id "
                "must be unique in the file.", "custom_id")
        else:
            seen.add(custom_id)
        if str(obj.get("method", "")).upper() != "POST":
            bad(line, "invalid_method", "Only POST requests are supported.", "method")
        if obj.get("url") != endpoint:
            bad(line, "mismatched_endpoint", f"The line's url {obj.get('url')!r} does not match the batch's "
                f"endpoint {endpoint!r}.", "url")
        if not isinstance(obj.get("body"), dict):
            bad(line, "missing_required_parameter", "Each request needs an object body.", "body")
    if total == 0:
        bad(0, "empty_file", "The input file has no requests.")
    return total, errors
