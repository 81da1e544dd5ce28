"""The server's batch worker: creates jobs, runs them one at a time at background priority, resumes them
after a restart, expires and cleans them up, and delivers webhooks.

The store opens lazily (the first batch request) or at startup when the data directory already has a
database (so jobs resume). Only one process runs jobs from a data directory: the one holding an exclusive
lock on `<data_dir>/batch/runner.lock` (released by the OS if the process dies); other processes sharing the
folder (Ray Serve replicas) accept and answer requests, and the lock holder runs the jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..api.errors import dumps_error
from ..api.protocols.batch import jina_status
from ..config import Settings
from ..engine.registry import ModelRegistry
from ..errors import InvalidInputError, JinaServeError
from ..netguard import request as guarded_request
from ..store.db import DB_FILENAME, default_data_dir
from ..store.jobs import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    PROCESSING,
    Job,
    SQLiteJobStore,
    new_id,
    open_job_store,
)
from .inputs import normalise_jina_file, validate_openai_file, write_jina_lines
from .lines import LineRunner
from .object_store import check_object_url, fetch_object, is_object_url
from .readers import iter_lines
from .runner import run_units
from .sinks import JsonlSink, cut_to

log = logging.getLogger("jinaserve.batch")

WEBHOOK_ATTEMPTS = 5
WEBHOOK_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


class BatchManager:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.data_dir = Path(settings.data_dir).expanduser() if settings.data_dir else default_data_dir()
        self._store: SQLiteJobStore | None = None
        self._open_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancelled: set[str] = set()
        self._thread: threading.Thread | None = None
        self._lock_file: Any = None
        self._webhooks: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the store now if this data directory already has one (jobs to resume)."""
        if (self.data_dir / DB_FILENAME).exists():
            _ = self.store

    @property
    def store(self) -> SQLiteJobStore:
        with self._open_lock:
            if self._store is None:
                self._store = open_job_store(self.data_dir)
                self._try_run_jobs()
            return self._store

    def _try_run_jobs(self) -> None:
        assert self._store is not None
        f = open(self._store.root / "runner.lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            log.info("batch jobs in %s are run by another process (it holds runner.lock)", self.data_dir)
            return
        self._lock_file = f
        self._thread = threading.Thread(target=self._loop, name="batch-worker", daemon=True)
        self._thread.start()
        for job in self._store.list_jobs(limit=1000):
            if job.webhook_url and (job.webhook_state or {}).get("state") == "pending":
                self._send_webhook(job.id)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for t in self._webhooks:
            t.join(timeout=1)
        if self._lock_file is not None:
            self._lock_file.close()
        if self._store is not None:
            self._store.db.close()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ creating jobs
    def _new_job(self, api: str, endpoint: str, window_s: float, **fields: Any) -> Job:
        now = time.time()
        return Job(id=new_id("batch_"), api=api, endpoint=endpoint, status=PENDING, created_at=now,
                   expires_at=now + window_s, **fields)

    def create_jina_job(self, *, model: str, defaults: dict[str, Any], items: list[Any] | None,
                        input_url: str | None, webhook_url: str | None, base_url: str) -> Job:
        store = self.store
        job = self._new_job("jina", "/v1/embeddings", self.settings.batch_completion_window_s, model=model,
                            params={"defaults": defaults, "base_url": base_url}, input_url=input_url,
                            webhook_url=webhook_url)
        if items is not None:
            path = store.job_dir(job.id) / "input.jsonl"
            job.total = write_jina_lines(items, path)
            job.input_file_id = store.add_file(f"{job.id}_input.jsonl", "batch", path,
                                               file_id=f"file-{job.id.removeprefix('batch_')}-in").id
        store.create_job(job)
        self.wake()
        return job

    def create_openai_job(self, *, input_file_id: str, endpoint: str, window_s: float,
                          window: str, metadata: dict[str, str] | None) -> Job:
        store = self.store
        rec = store.get_file(input_file_id)
        if rec is None:
            from ..errors import ResourceNotFoundError

            raise ResourceNotFoundError(f"No file with id {input_file_id!r}; upload it with POST /v1/files")
        if rec.purpose != "batch":
            raise InvalidInputError(f"File {input_file_id!r} has purpose {rec.purpose!r}; a batch needs a file "
                                    f"uploaded with purpose 'batch'")
        total, errors = validate_openai_file(rec.path, endpoint, self.settings.batch_max_lines)
        job = self._new_job("openai", endpoint, window_s, input_file_id=input_file_id, total=total,
                            params={"completion_window": window, "metadata": metadata})
        if errors:
            now = time.time()
            job.status, job.errors, job.finished_at = FAILED, errors, now
            job.expires_at = now + self.settings.batch_retention_s
        store.create_job(job)
        self.wake()
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.store.request_cancel(job_id)
        if job is not None and job.status == PROCESSING:
            self._cancelled.add(job_id)
        return job

    # ------------------------------------------------------------------ the worker
    def _cleanup_interval(self) -> float:
        s = self.settings
        return max(0.5, min(60.0, min(s.batch_completion_window_s, s.batch_retention_s) / 4))

    def _loop(self) -> None:
        next_cleanup = 0.0
        while not self._stopping.is_set():
            try:
                if time.time() >= next_cleanup:
                    self.cleanup()
                    next_cleanup = time.time() + self._cleanup_interval()
                jobs = self.store.runnable_jobs()
                if jobs and self._models_settled():
                    self._run(jobs[0])
                    continue
                self._wake.wait(min(1.0, self._cleanup_interval()))
                self._wake.clear()
            except Exception:  # never let the worker die: log, back off, go on
                log.exception("batch worker error")
                self._stopping.wait(1.0)

    def _models_settled(self) -> bool:
        """Jobs wait while models are still loading (their lines would fail with 503)."""
        return all(s.state != "loading" for s in self.registry.status())

    def _run(self, job: Job) -> None:
        store = self.store
        try:
            if job.status == PENDING:
                job = self._prepare(job)
            if job.status != PROCESSING:
                return
            paths = self._paths(job)
            sink = JsonlSink(paths, job.sink_state)
            lines = LineRunner(job, self.registry, self.settings)
            source = store.get_file(job.input_file_id or "")
            if source is None or not source.path.exists():
                raise InvalidInputError("the job's input file is missing from the data directory")
            units = (lines.unit(n, raw, off) for n, raw, off in iter_lines(source.path, job.input_offset,
                                                                           job.next_line))
            expires_at = job.expires_at or float("inf")
            try:
                done = run_units(units, sink=sink, commit=lambda p: store.commit_progress(job.id, p),
                                 should_stop=lambda: (self._stopping.is_set() or job.id in self._cancelled
                                                      or time.time() > expires_at))
            finally:
                sink.close()
            fresh = store.get_job(job.id)
            if fresh is None:
                return
            if done:
                self._finish(fresh, COMPLETED)
            elif fresh.cancel_requested_at is not None:
                self._finish(fresh, CANCELLED)
            elif time.time() > expires_at:
                self._finish(fresh, EXPIRED)
            # else: shutting down; the job stays `processing` and resumes at the next start
        except JinaServeError as exc:
            self._fail(job, exc.message)
        except Exception as exc:
            log.exception("batch job %s failed", job.id)
            self._fail(job, f"internal error ({type(exc).__name__}); see the server log")

    def _prepare(self, job: Job) -> Job:
        store = self.store
        fields: dict[str, Any] = {"status": PROCESSING, "started_at": time.time()}
        if job.input_file_id is None:  # a Jina job from input_url: download and normalise it first
            folder = store.job_dir(job.id)
            raw = folder / "download.part"
            url = job.input_url or ""
            with open(raw, "wb") as f:
                if is_object_url(url):  # checked again: the setting may have changed since the job was created
                    check_object_url(url, what="input_url", allowed=self.settings.batch_allow_object_store)
                    fetch_object(url, what="input_url", sink=f, max_bytes=self.settings.batch_max_input_bytes)
                    status = 200
                else:
                    status = guarded_request("GET", url, what="input_url", sink=f,
                                             allow_private=self.settings.batch_allow_private_urls,
                                             max_bytes=self.settings.batch_max_input_bytes)
            if status != 200:
                raise InvalidInputError(f"input_url: fetching the file returned HTTP {status}")
            path = folder / "input.jsonl"
            fields["total"] = normalise_jina_file(raw, path, self.settings.batch_max_lines)
            raw.unlink()
            fields["input_file_id"] = store.add_file(f"{job.id}_input.jsonl", "batch", path,
                                                     file_id=f"file-{job.id.removeprefix('batch_')}-in").id
        store.update_job(job.id, only_if_status=(PENDING,), **fields)
        return store.get_job(job.id) or job

    def _paths(self, job: Job) -> dict[str, Path]:
        folder = self.store.job_dir(job.id)
        return {"out": folder / "output.jsonl", "err": folder / "errors.jsonl"}

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        """Cut the files to the last commit, register them, and set the final status (idempotent: a crash
        in here leaves the job `processing`, and the next start finishes it again)."""
        store = self.store
        paths = self._paths(job)
        cut_to(paths, job.sink_state)
        failed = job.failed
        if status == EXPIRED and job.api == "openai" and job.input_file_id:
            failed += self._write_not_run(job, paths["err"])
        short = job.id.removeprefix("batch_")
        out_id = err_id = None
        if job.completed:
            out_id = store.add_file(f"{job.id}_output.jsonl", "batch_output", paths["out"],
                                    file_id=f"file-{short}-out").id
        if failed:
            err_id = store.add_file(f"{job.id}_errors.jsonl", "batch_output", paths["err"],
                                    file_id=f"file-{short}-err").id
        now = time.time()
        store.update_job(job.id, status=status, finished_at=now, expires_at=now + self.settings.batch_retention_s,
                         output_file_id=out_id, error_file_id=err_id, failed=failed, error=error,
                         webhook_state={"state": "pending", "attempts": 0} if job.webhook_url else None)
        self._cancelled.discard(job.id)
        log.info("batch job %s %s: %d completed, %d failed", job.id, status, job.completed, failed)
        if job.webhook_url:
            self._send_webhook(job.id)

    def _write_not_run(self, job: Job, path: Path) -> int:
        """OpenAI: each line that never ran gets an error line `batch_expired`."""
        source = self.store.get_file(job.input_file_id or "")
        if source is None:
            return 0
        lines = LineRunner(job, self.registry, self.settings)
        n = 0
        with open(path, "ab") as f:
            for line_no, raw, _ in iter_lines(source.path, job.input_offset, job.next_line):
                f.write(dumps_error(lines.not_run(line_no, raw, "batch_expired", EXPIRED_MESSAGE)) + b"\n")
                n += 1
        return n

    def _fail(self, job: Job, message: str) -> None:
        fresh = self.store.get_job(job.id) or job
        if fresh.status in (PENDING, PROCESSING):
            self._finish(fresh, FAILED, error=message)

    # ------------------------------------------------------------------ expiry and cleanup
    def cleanup(self, now: float | None = None) -> None:
        store = self.store
        now = time.time() if now is None else now
        overdue, stale = store.jobs_to_clean(now)
        for job in overdue:
            self._finish(job, EXPIRED)
        for job in stale:
            store.delete_job(job.id)
        for rec in list(store.expired_files(now)):
            store.delete_file(rec.id)

    # ------------------------------------------------------------------ webhooks
    def _send_webhook(self, job_id: str) -> None:
        t = threading.Thread(target=self._deliver, args=(job_id,), name=f"webhook-{job_id}", daemon=True)
        self._webhooks = [w for w in self._webhooks if w.is_alive()] + [t]
        t.start()

    def _deliver(self, job_id: str) -> None:
        store = self.store
        job = store.get_job(job_id)
        if job is None or not job.webhook_url:
            return
        state = dict(job.webhook_state or {"attempts": 0})
        while state.get("attempts", 0) < WEBHOOK_ATTEMPTS and not self._stopping.is_set():
            attempt = state.get("attempts", 0)
            if attempt:
                self._stopping.wait(WEBHOOK_BACKOFF_S[min(attempt - 1, len(WEBHOOK_BACKOFF_S) - 1)])
            state["attempts"] = attempt + 1
            try:
                code = guarded_request("POST", job.webhook_url, what="webhook_url", json_body=jina_status(
                    job, job.params.get("base_url", "")), allow_private=self.settings.batch_allow_private_urls,
                    max_bytes=1024 * 1024, total_timeout_s=30.0)
                state["last_status"] = code
                if 200 <= code < 300:
                    state["state"] = "delivered"
            except JinaServeError as exc:
                state["last_error"] = exc.message
            if state.get("state") != "delivered" and state["attempts"] >= WEBHOOK_ATTEMPTS:
                state["state"] = "failed"
            store.update_job(job_id, webhook_state=state)
            if state.get("state") in ("delivered", "failed"):
                return


def close_quietly(manager: BatchManager | None) -> None:
    if manager is not None:
        with contextlib.suppress(Exception):
            manager.stop()
