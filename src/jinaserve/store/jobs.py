"""The job store: batch jobs, their progress cursor and their files, on the embedded database.

`JobStore` is the interface the batch code uses; `SQLiteJobStore` implements it on `store.db.Database` (the
default, nothing to install). Files (uploaded inputs, outputs, error files) live under `<data_dir>/batch/`;
the database records their ids, names and sizes.

Exactly-once: a job's output is an append-only file. The runner appends the results of a chunk of input
lines, flushes, then calls `commit_progress`, which records in ONE transaction the next input line, the
input byte offset, the output files' lengths and the counters. After a crash the job resumes from that
cursor and the output files are cut back to the recorded lengths, so a line is never lost or written twice.
"""

from __future__ import annotations

import abc
import contextlib
import json
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .db import Database

PENDING, PROCESSING, COMPLETED, FAILED, EXPIRED, CANCELLED = (
    "pending", "processing", "completed", "failed", "expired", "cancelled")
FINAL_STATUSES = (COMPLETED, FAILED, EXPIRED, CANCELLED)
RUNNABLE_STATUSES = (PENDING, PROCESSING)

_MIGRATIONS = [
    """
    CREATE TABLE batch_files (
        id TEXT PRIMARY KEY,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        path TEXT NOT NULL
    );
    CREATE TABLE batch_jobs (
        id TEXT PRIMARY KEY,
        api TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        input_file_id TEXT,
        input_url TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        cancel_requested_at REAL,
        expires_at REAL,
        total INTEGER,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        total_tokens INTEGER NOT NULL DEFAULT 0,
        next_line INTEGER NOT NULL DEFAULT 0,
        input_offset INTEGER NOT NULL DEFAULT 0,
        sink_state TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        errors TEXT,
        webhook_url TEXT,
        webhook_state TEXT
    );
    CREATE INDEX batch_jobs_status ON batch_jobs(status, created_at);
    CREATE INDEX batch_jobs_created ON batch_jobs(created_at);
    """,
]


def new_id(prefix: str) -> str:
    """A random, URL-safe id (`batch_…`, `file-…`), as the hosted APIs spell theirs."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: float
    path: Path
    expires_at: float | None = None


@dataclass
class Job:
    id: str
    api: str  # jina | openai | cli
    endpoint: str  # /v1/embeddings | /v1/rerank
    status: str
    created_at: float
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    input_file_id: str | None = None
    input_url: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested_at: float | None = None
    expires_at: float | None = None
    total: int | None = None
    completed: int = 0
    failed: int = 0
    total_tokens: int = 0
    next_line: int = 0
    input_offset: int = 0
    sink_state: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    errors: list[dict[str, Any]] | None = None
    webhook_url: str | None = None
    webhook_state: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass
class Progress:
    """What one committed chunk adds to a job (see `JobStore.commit_progress`)."""

    next_line: int
    input_offset: int
    sink_state: dict[str, Any]
    completed: int = 0
    failed: int = 0
    tokens: int = 0


class JobStore(abc.ABC):
    """What the batch code needs from a store. SQLite by default; a server-grade database (several
    servers sharing one job queue) would implement the same calls."""

    root: Path

    @abc.abstractmethod
    def add_file(self, filename: str, purpose: str, source: Path, *, expires_at: float | None = None,
                 file_id: str | None = None) -> FileRecord:
        """Record `source` (moved into the store unless it is already under `root`)."""

    @abc.abstractmethod
    def get_file(self, file_id: str) -> FileRecord | None: ...

    @abc.abstractmethod
    def list_files(self, *, purpose: str | None = None, limit: int = 10000) -> list[FileRecord]: ...

    @abc.abstractmethod
    def delete_file(self, file_id: str) -> bool: ...

    @abc.abstractmethod
    def create_job(self, job: Job) -> Job: ...

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    def list_jobs(self, *, limit: int = 20, after: str | None = None, api: str | None = None) -> list[Job]:
        """Newest first; `after` = the id of the last job of the previous page. Without `api`, every job but
        the CLI's own (`jinaserve batch run`)."""

    @abc.abstractmethod
    def runnable_jobs(self) -> list[Job]:
        """Jobs to run or resume (pending, processing), oldest first."""

    @abc.abstractmethod
    def update_job(self, job_id: str, *, only_if_status: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Set fields; with `only_if_status`, only while the job is in one of those statuses."""

    @abc.abstractmethod
    def commit_progress(self, job_id: str, progress: Progress) -> bool:
        """Atomically advance the cursor, the output lengths and the counters of a processing job.
        False (nothing written) if the job is no longer processing (cancelled, expired)."""

    @abc.abstractmethod
    def request_cancel(self, job_id: str) -> Job | None:
        """Pending → cancelled at once; processing → marked, the runner stops at its next commit."""

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> None:
        """Remove a job, its files and its folder."""

    @abc.abstractmethod
    def jobs_to_clean(self, now: float) -> tuple[list[Job], list[Job]]:
        """(unfinished jobs past their completion window, finished jobs past their retention)."""

    def job_dir(self, job_id: str) -> Path:
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:  # noqa: B027 - optional
        pass


_JSON_FIELDS = ("params", "sink_state", "errors", "webhook_state")


class SQLiteJobStore(JobStore):
    def __init__(self, db: Database, root: Path | None = None) -> None:
        self.db = db
        self.root = Path(root) if root is not None else db.path.parent / "batch"
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        db.migrate("batch_jobs", _MIGRATIONS)

    # ------------------------------------------------------------------ files
    def add_file(self, filename: str, purpose: str, source: Path, *, expires_at: float | None = None,
                 file_id: str | None = None) -> FileRecord:
        file_id = file_id or new_id("file-")
        dest = Path(source)
        if not dest.resolve().is_relative_to(self.root.resolve()):  # files already in the store stay put
            dest = self.root / "files" / file_id
            shutil.move(str(source), dest)
        rec = FileRecord(file_id, filename, purpose, dest.stat().st_size, time.time(), dest, expires_at)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO batch_files(id, filename, purpose, bytes, created_at, expires_at, "
                         "path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (rec.id, rec.filename, rec.purpose, rec.bytes, rec.created_at, rec.expires_at,
                          str(dest.resolve().relative_to(self.root.resolve()))))
        return rec

    def new_file_path(self, file_id: str) -> Path:
        return self.root / "files" / file_id

    def _file(self, row: sqlite3.Row) -> FileRecord:
        return FileRecord(row["id"], row["filename"], row["purpose"], row["bytes"], row["created_at"],
                          self.root / row["path"], row["expires_at"])

    def get_file(self, file_id: str) -> FileRecord | None:
        row = self.db.connection().execute("SELECT * FROM batch_files WHERE id = ?", (file_id,)).fetchone()
        return self._file(row) if row else None

    def list_files(self, *, purpose: str | None = None, limit: int = 10000) -> list[FileRecord]:
        sql, args = "SELECT * FROM batch_files", []
        if purpose:
            sql, args = sql + " WHERE purpose = ?", [purpose]
        rows = self.db.connection().execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._file(r) for r in rows]

    def delete_file(self, file_id: str) -> bool:
        rec = self.get_file(file_id)
        if rec is None:
            return False
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM batch_files WHERE id = ?", (file_id,))
        with contextlib.suppress(FileNotFoundError):
            rec.path.unlink()
        return True

    # ------------------------------------------------------------------ jobs
    def _job(self, row: sqlite3.Row) -> Job:
        values = dict(row)
        for name in _JSON_FIELDS:
            raw = values.get(name)
            values[name] = json.loads(raw) if raw else ({} if name in ("params", "sink_state") else None)
        return Job(**values)

    def create_job(self, job: Job) -> Job:
        values = {k: v for k, v in job.__dict__.items()}
        for name in _JSON_FIELDS:
            values[name] = json.dumps(values[name]) if values[name] is not None else None
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.db.transaction() as conn:
            conn.execute(f"INSERT INTO batch_jobs({cols}) VALUES ({marks})", tuple(values.values()))
        return job

    def get_job(self, job_id: str) -> Job | None:
        row = self.db.connection().execute("SELECT * FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def list_jobs(self, *, limit: int = 20, after: str | None = None, api: str | None = None) -> list[Job]:
        where, args = ["api = ?" if api else "api != 'cli'"], [api] if api else []
        if after:
            anchor = self.db.connection().execute("SELECT created_at FROM batch_jobs WHERE id = ?",
                                                  (after,)).fetchone()
            if anchor is not None:
                where.append("(created_at < ? OR (created_at = ? AND id < ?))")
                args += [anchor["created_at"], anchor["created_at"], after]
        sql = "SELECT * FROM batch_jobs WHERE " + " AND ".join(where)
        rows = self.db.connection().execute(sql + " ORDER BY created_at DESC, id DESC LIMIT ?",
                                            (*args, limit)).fetchall()
        return [self._job(r) for r in rows]

    def runnable_jobs(self) -> list[Job]:
        rows = self.db.connection().execute(
            "SELECT * FROM batch_jobs WHERE status IN (?, ?) AND api != 'cli' ORDER BY created_at, id",
            RUNNABLE_STATUSES).fetchall()
        return [self._job(r) for r in rows]

    def update_job(self, job_id: str, *, only_if_status: tuple[str, ...] | None = None, **fields: Any) -> bool:
        if not fields:
            return True
        values = [json.dumps(v) if k in _JSON_FIELDS and v is not None else v for k, v in fields.items()]
        sql = "UPDATE batch_jobs SET " + ", ".join(f"{k} = ?" for k in fields) + " WHERE id = ?"
        args: list[Any] = [*values, job_id]
        if only_if_status:
            sql += f" AND status IN ({', '.join('?' for _ in only_if_status)})"
            args += list(only_if_status)
        with self.db.transaction() as conn:
            return conn.execute(sql, args).rowcount > 0

    def commit_progress(self, job_id: str, progress: Progress) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE batch_jobs SET next_line = ?, input_offset = ?, sink_state = ?, completed = completed + ?, "
                "failed = failed + ?, total_tokens = total_tokens + ? "
                "WHERE id = ? AND status = ? AND cancel_requested_at IS NULL",
                (progress.next_line, progress.input_offset, json.dumps(progress.sink_state), progress.completed,
                 progress.failed, progress.tokens, job_id, PROCESSING))
            return cur.rowcount > 0

    def request_cancel(self, job_id: str) -> Job | None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("UPDATE batch_jobs SET status = ?, cancel_requested_at = ?, finished_at = ? "
                         "WHERE id = ? AND status = ?", (CANCELLED, now, now, job_id, PENDING))
            conn.execute("UPDATE batch_jobs SET cancel_requested_at = ? WHERE id = ? AND status = ? "
                         "AND cancel_requested_at IS NULL", (now, job_id, PROCESSING))
        return self.get_job(job_id)

    def delete_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        if job is None:
            return
        for file_id in (job.output_file_id, job.error_file_id):
            if file_id:
                self.delete_file(file_id)
        if job.input_file_id and job.api == "jina":  # a Jina job's input is its own, not an uploaded file
            self.delete_file(job.input_file_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM batch_jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.root / "jobs" / job_id, ignore_errors=True)

    def jobs_to_clean(self, now: float) -> tuple[list[Job], list[Job]]:
        conn = self.db.connection()
        overdue = conn.execute("SELECT * FROM batch_jobs WHERE status IN (?, ?) AND expires_at IS NOT NULL "
                               "AND expires_at < ? AND api != 'cli'", (*RUNNABLE_STATUSES, now)).fetchall()
        final = ", ".join("?" for _ in FINAL_STATUSES)
        stale = conn.execute(f"SELECT * FROM batch_jobs WHERE status IN ({final}) AND expires_at IS NOT NULL "
                             f"AND expires_at < ?", (*FINAL_STATUSES, now)).fetchall()
        return [self._job(r) for r in overdue], [self._job(r) for r in stale]

    def expired_files(self, now: float) -> Iterator[FileRecord]:
        rows = self.db.connection().execute("SELECT * FROM batch_files WHERE expires_at IS NOT NULL AND "
                                            "expires_at < ?", (now,)).fetchall()
        return (self._file(r) for r in rows)


def open_job_store(data_dir: str | Path | None) -> SQLiteJobStore:
    from .db import open_database

    return SQLiteJobStore(open_database(data_dir))
