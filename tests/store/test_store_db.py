"""The embedded SQLite database: migrations per component, WAL, transactions, one connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from jinaserve.store import Database, open_database


def test_migrations_apply_once_per_component_and_extend(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    db.migrate("jobs", ["CREATE TABLE jobs (id TEXT PRIMARY KEY);\nCREATE INDEX jobs_id ON jobs(id);"])
    db.migrate("jobs", ["CREATE TABLE jobs (id TEXT PRIMARY KEY);\nCREATE INDEX jobs_id ON jobs(id);"])  # no-op
    db.migrate("jobs", ["CREATE TABLE jobs (id TEXT PRIMARY KEY);\nCREATE INDEX jobs_id ON jobs(id);",
                        "ALTER TABLE jobs ADD COLUMN status TEXT"])
    db.migrate("classifiers", ["CREATE TABLE classifiers (id TEXT PRIMARY KEY)"])
    conn = db.connection()
    versions = dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
    assert versions == {"jobs": 2, "classifiers": 1}
    assert [r[1] for r in conn.execute("PRAGMA table_info(jobs)")] == ["id", "status"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    reopened = Database(tmp_path / "jinaserve.db")  # a restart sees the same schema and versions
    assert dict(reopened.connection().execute("SELECT component, version FROM schema_versions").fetchall()) == \
        versions


def test_transaction_rolls_back_and_threads_get_their_own_connection(tmp_path: Path) -> None:
    db = open_database(tmp_path / "nested" / "dir")
    db.migrate("t", ["CREATE TABLE t (v INTEGER)"])
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    seen: list[object] = []

    def reader() -> None:
        conn = db.connection()
        seen.append(conn)
        seen.append([r[0] for r in conn.execute("SELECT v FROM t")])

    t = threading.Thread(target=reader)
    t.start()
    t.join()
    assert seen[0] is not db.connection()
    assert seen[1] == [2]
    with pytest.raises(sqlite3.OperationalError):
        db.migrate("bad", ["CREATE TABLE t (v INTEGER)"])  # a failing migration leaves no version behind
    assert db.connection().execute("SELECT count(*) FROM schema_versions WHERE component='bad'").fetchone()[0] == 0


def test_one_database_per_file_shared_and_reopening_after_close(tmp_path: Path) -> None:
    a = open_database(tmp_path)
    b = open_database(str(tmp_path) + "/")
    assert a is b and open_database(tmp_path / "other") is not a
    a.migrate("t", ["CREATE TABLE t (v INTEGER)"])
    a.close()  # one component shutting down does not break the other: connections reopen on next use
    with b.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (7)")
    assert [r[0] for r in a.connection().execute("SELECT v FROM t")] == [7]
