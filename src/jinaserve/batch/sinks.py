"""Append-only output files whose committed lengths are stored with the job's cursor.

Opening a sink cuts each file back to the committed length (whatever a crashed run wrote after its last
commit is dropped); `flush()` pushes written bytes to the OS (they survive a process kill) and returns the
new lengths for the next commit.

- `JsonlSink`: server jobs, records `("out" | "err", line dict)` → the output and error JSONL files.
- `StagedVectorSink`: `jinaserve batch run`, records `(row meta, vector | None)` → a raw float32 file plus
  one JSON line of metadata per row; `finalize` turns them into the requested `.jsonl`, `.parquet` or `.npy`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..api.errors import dumps_error

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def _open_at(path: Path, length: int) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - owned by the sink
    f.truncate(length)
    f.seek(length)
    return f


class JsonlSink:
    def __init__(self, paths: dict[str, Path], state: dict[str, Any]) -> None:
        self._files = {name: _open_at(path, int(state.get(name, 0))) for name, path in paths.items()}

    def write(self, records: list[tuple[str, Any]]) -> None:
        for name, obj in records:
            self._files[name].write(dumps_error(obj, option=_OPTS))  # a client's odd custom_id written safely

    def flush(self) -> dict[str, Any]:
        for f in self._files.values():
            f.flush()
        return {name: f.tell() for name, f in self._files.items()}

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def cut_to(paths: dict[str, Path], state: dict[str, Any]) -> None:
    """Cut files back to their committed lengths (a job that stopped between a write and its commit)."""
    JsonlSink(paths, state).close()


class StagedVectorSink:
    VECTORS, ROWS = "vectors.f32", "rows.jsonl"

    def __init__(self, folder: Path, state: dict[str, Any], dims: int) -> None:
        self.folder = folder
        self.dims = dims
        self._vec = _open_at(folder / self.VECTORS, int(state.get("vec", 0)))
        self._rows = _open_at(folder / self.ROWS, int(state.get("rows", 0)))

    def write(self, records: list[tuple[dict[str, Any], np.ndarray | None]]) -> None:
        block = np.empty((len(records), self.dims), dtype="<f4")
        for i, (_meta, vector) in enumerate(records):
            block[i] = np.nan if vector is None else vector
        self._vec.write(block.tobytes())
        self._rows.write(b"".join(orjson.dumps(m, option=_OPTS) for m, _ in records))

    def flush(self) -> dict[str, Any]:
        self._vec.flush()
        self._rows.flush()
        return {"vec": self._vec.tell(), "rows": self._rows.tell(), "dims": self.dims}

    def close(self) -> None:
        self._vec.close()
        self._rows.close()


def staged_rows(folder: Path) -> Iterator[dict[str, Any]]:
    with open(folder / StagedVectorSink.ROWS, "rb") as f:
        for line in f:
            yield orjson.loads(line)


def finalize(folder: Path, state: dict[str, Any], out: Path, fmt: str, errors_path: Path) -> tuple[int, int]:
    """Write the staged rows as `fmt` to `out` (atomically: a temp file, then rename) and the failed rows to
    `errors_path`. Returns (rows, failed)."""
    dims = int(state["dims"])
    rows = list(staged_rows(folder))
    full = (np.memmap(folder / StagedVectorSink.VECTORS, dtype="<f4", mode="r", shape=(len(rows), dims))
            if rows else np.zeros((0, dims), dtype="<f4"))
    failed = [r for r in rows if "error" in r]
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "npy":
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the temp name
            np.save(f, np.asarray(full), allow_pickle=False)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, Any] = {"index": pa.array([r["index"] for r in rows], pa.int64())}
        if any("id" in r for r in rows):
            columns["id"] = pa.array([None if r.get("id") is None else str(r["id"]) for r in rows], pa.string())
        flat = pa.array(full.reshape(-1), pa.float32())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dims)
        pq.write_table(pa.table(columns), tmp)
    else:
        with open(tmp, "wb") as f:
            for start in range(0, len(rows), 4096):
                block = np.array(full[start:start + 4096])  # a plain array (orjson does not take memmaps)
                for r, v in zip(rows[start:start + 4096], block, strict=True):
                    if "error" not in r:
                        item = {"index": r["index"], **({"id": r["id"]} if "id" in r else {}), "embedding": v}
                        f.write(orjson.dumps(item, option=_OPTS))
    os.replace(tmp, out)
    if failed:
        errors_path.write_text("".join(json.dumps(r) + "\n" for r in failed))
    elif errors_path.exists():
        errors_path.unlink()
    return len(rows), len(failed)
