"""The embedded database: one SQLite file in the data directory, WAL journal, one connection per thread.

WAL lets readers (status requests) run while a writer (a job's worker) commits; `synchronous=NORMAL` in
WAL mode keeps every committed transaction across a process crash (`kill -9`): only a power loss can drop
the last ones. Schema changes are per-component migrations recorded in `schema_versions`, so each part
of the store can evolve its own tables.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import platformdirs

DB_FILENAME = "jinaserve.db"


def default_data_dir() -> Path:
    """The per-user data folder (`~/.local/share/jinaserve` on Linux), used when no `--data-dir` is set."""
    return platformdirs.user_data_path("jinaserve")


class Database:
    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL)")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections must not be shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` … `COMMIT` (rolled back if the block raises)."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
        """Apply `migrations[v:]` for `component`, where v is its recorded version; each entry is one SQL
        script. Append new entries to evolve a schema; never edit an applied one."""
        with self.transaction() as conn:
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            version = int(row["version"]) if row else 0
            for script in migrations[version:]:
                for statement in _statements(script):
                    conn.execute(statement)
            if len(migrations) > version:
                conn.execute("INSERT INTO schema_versions(component, version) VALUES (?, ?) "
                             "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                             (component, len(migrations)))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3's `execute` runs one; `executescript` would
    commit the surrounding transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


_OPEN: dict[Path, Database] = {}
_OPEN_LOCK = threading.Lock()


def open_database(data_dir: str | Path | None) -> Database:
    """The database in `data_dir` (default: `default_data_dir()`), created on first use. One `Database` per
    file in a process, shared by its components (jobs, classifiers); `close()` only drops connections, which
    reopen on next use."""
    folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
    path = (folder / DB_FILENAME).resolve()
    with _OPEN_LOCK:
        db = _OPEN.get(path)
        if db is None:
            db = _OPEN[path] = Database(path)
        return db
