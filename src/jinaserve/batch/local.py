"""`jinaserve batch run`: a job run in-process on the same runner and store as the server's jobs.

The job's id is derived from what defines it (input path, size and mtime; output path; model; options), so
re-running the same command after a crash finds the job in the data directory and resumes from its last
commit. Rows go through the model in chunks on the batcher's background lane; results are staged as raw
float32 vectors (see `sinks.StagedVectorSink`) and the requested file (.jsonl, .parquet, .npy) is written at
the end, atomically.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, JinaServeError
from ..jobs import EmbedInput, EmbedOptions
from ..store.jobs import COMPLETED, PROCESSING, Job, JobStore
from .readers import Row, count_rows, input_format, iter_rows
from .runner import Unit, UnitResult, run_units
from .sinks import StagedVectorSink, finalize

CHUNK_ROWS = 128


@dataclass
class LocalJobSpec:
    input: str
    out: str
    model: str
    input_format: str = "text"
    output_format: str = "jsonl"
    text_field: str = "text"
    id_field: str = "id"
    task: str | None = None
    dimensions: int | None = None
    normalized: bool = True

    def options(self) -> EmbedOptions:
        return EmbedOptions(task=self.task, dimensions=self.dimensions, normalized=self.normalized, truncate=True,
                            in_process=True)


def output_format(out: Path, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    suffix = out.suffix.lower()
    return {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}.get(suffix, "jsonl")


def make_spec(input_path: Path, out: Path, model: str, **kw: Any) -> LocalJobSpec:
    if not input_path.is_file():
        raise InvalidInputError(f"input file {input_path} does not exist")
    return LocalJobSpec(str(input_path.resolve()), str(out.resolve()), model,
                        input_format=input_format(input_path, kw.pop("input_format", None)),
                        output_format=output_format(out, kw.pop("output_format", None)), **kw)


def job_id_for(spec: LocalJobSpec) -> str:
    st = Path(spec.input).stat()
    key = json.dumps({**asdict(spec), "size": st.st_size, "mtime_ns": st.st_mtime_ns}, sort_keys=True)
    return "cli-" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass
class RunSummary:
    job_id: str
    rows: int
    failed: int
    resumed_from: int
    seconds: float
    already_done: bool = False
    errors_path: str | None = None


class JobLocked(InvalidInputError):
    pass


def check_one_vector(model: str, family: Any) -> None:
    """The output holds one vector per row: refuse, before any work, a model that returns one per token."""
    if getattr(family, "multi_vector_only", False):
        raise InvalidInputError(f"Model {model!r} returns one vector per token (multi-vector), and `jinaserve batch "
                                "run` writes one vector per row; run it as a server batch job instead (POST "
                                "/v1/batch/embeddings: each output line carries the per-token vectors).")


def errors_path_of(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def open_job(store: JobStore, spec: LocalJobSpec) -> tuple[Job, Any]:
    """The job for `spec` (created, or found to resume) and its lock (one run of a job at a time)."""
    job_id = job_id_for(spec)
    lock = open(store.job_dir(job_id) / "lock", "a+")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise JobLocked(f"another `jinaserve batch run` is running this job ({job_id}); wait for it") from None
    job = store.get_job(job_id)
    if job is not None and job.status == COMPLETED and not Path(spec.out).exists():
        store.delete_job(job_id)  # the output was removed: run it again
        store.job_dir(job_id)
        job = None
    if job is None:
        now = time.time()
        job = Job(id=job_id, api="cli", endpoint="/v1/embeddings", status=PROCESSING, created_at=now,
                  started_at=now, model=spec.model, params=asdict(spec),
                  total=count_rows(Path(spec.input), spec.input_format))
        store.create_job(job)
    return job, lock


def run_local(store: JobStore, spec: LocalJobSpec, service: Any, *,
              on_progress: Callable[[int], None] | None = None) -> RunSummary:
    """Run (or resume) the job for `spec` on `service` (a loaded `ModelService`)."""
    started = time.perf_counter()
    check_one_vector(service.id, service.family)
    job, lock = open_job(store, spec)
    try:
        if job.status == COMPLETED:
            return RunSummary(job.id, job.total or 0, job.failed, job.next_line, 0.0, already_done=True)
        options = spec.options()
        dims = spec.dimensions or service.spec.dims or int(service.embed_sync([EmbedInput(text="x")],
                                                                               options).vectors[0].shape[-1])
        folder = store.job_dir(job.id)
        sink = StagedVectorSink(folder, job.sink_state, dims)
        rows = iter_rows(Path(spec.input), spec.input_format, text_field=spec.text_field, id_field=spec.id_field,
                         start_row=job.next_line, offset=job.input_offset)
        done = job.next_line
        progress_cb = None
        if on_progress is not None:
            on_progress(done)

            def progress_cb(p: Any) -> None:
                on_progress(p.next_line)

        try:
            finished = run_units(_chunks(rows, service, options), sink=sink,
                                 commit=lambda p: store.commit_progress(job.id, p), should_stop=lambda: False,
                                 on_commit=progress_cb)
        finally:
            sink.close()
        if not finished:
            raise InvalidInputError(f"job {job.id} stopped before the end")
        fresh = store.get_job(job.id)
        assert fresh is not None
        out = Path(spec.out)
        n, failed = finalize(folder, fresh.sink_state, out, spec.output_format, errors_path_of(out))
        store.update_job(job.id, status=COMPLETED, finished_at=time.time(), total=n)
        for name in (StagedVectorSink.VECTORS, StagedVectorSink.ROWS):
            (folder / name).unlink(missing_ok=True)  # the output file now holds them
        return RunSummary(job.id, n, failed, done, time.perf_counter() - started,
                          errors_path=str(errors_path_of(out)) if failed else None)
    finally:
        lock.close()


def _meta(row: Row, error: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"index": row.index}
    if row.id is not None:
        meta["id"] = row.id
    if error or row.error:
        meta["error"] = error or row.error
    return meta


def _chunks(rows: Iterator[tuple[Row, int]], service: Any, options: EmbedOptions) -> Iterator[Unit]:
    chunk: list[tuple[Row, int]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= CHUNK_ROWS:
            yield _unit(chunk, service, options)
            chunk = []
    if chunk:
        yield _unit(chunk, service, options)


def _unit(chunk: list[tuple[Row, int]], service: Any, options: EmbedOptions) -> Unit:
    rows = [r for r, _ in chunk]
    good = [r for r in rows if r.error is None]

    def start() -> Any:
        return service.start_embed([EmbedInput(text=r.text) for r in good], options)

    def collect(outcome: Any) -> UnitResult:
        if isinstance(outcome, JinaServeError):  # one bad row fails the whole chunk: redo them one by one
            vectors = [_one(service, r, options) for r in good]
        else:
            vectors = list(outcome.vectors)
        by_row = {id(r): v for r, v in zip(good, vectors, strict=True)}
        records = []
        failed = 0
        for r in rows:
            v = by_row.get(id(r))
            if isinstance(v, str) or r.error is not None:
                failed += 1
                records.append((_meta(r, v if isinstance(v, str) else None), None))
            else:
                records.append((_meta(r), v))
        return UnitResult(records, completed=len(rows) - failed, failed=failed)

    return Unit(rows[-1].index + 1, chunk[-1][1], start=start if good else _NoWork, collect=collect,
                n_items=len(good))


class _NoWork:
    """A chunk whose rows all failed to read: nothing to run."""

    vectors: list[np.ndarray] = []

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self

    def cancel(self) -> None:
        pass


def _one(service: Any, row: Row, options: EmbedOptions) -> np.ndarray | str:
    try:
        return service.start_embed([EmbedInput(text=row.text)], options).result().vectors[0]
    except JinaServeError as exc:
        return f"row {row.index}: {exc.message}"


