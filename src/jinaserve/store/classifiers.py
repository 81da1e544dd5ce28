"""Trained classifiers (/v1/train): one row each in the embedded database, behind `ClassifierStore`.

A record holds what the classify engine needs to predict (model, input task, labels, the serialised
weights) and what `GET /v1/classifiers` reports (owner, access, counters, timestamps). Updates are
optimistic: `replace` only writes when the row still has the version that was read, so two concurrent
trainings of one classifier cannot silently drop each other's examples (the loser gets a 409).
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

from ..errors import ResourceLimitError
from .db import Database

COMPONENT = "classifiers"
MIGRATIONS = [
    """
    CREATE TABLE classifiers (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        model TEXT NOT NULL,
        input_task TEXT,
        dims INTEGER NOT NULL,
        labels TEXT NOT NULL,
        access TEXT NOT NULL,
        state BLOB NOT NULL,
        num_samples INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        updated_number INTEGER NOT NULL DEFAULT 0,
        used_at REAL,
        used_number INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX classifiers_owner ON classifiers(owner, created_at);
    """,
]


@dataclass
class ClassifierRecord:
    id: str
    owner: str
    model: str
    input_task: str | None
    dims: int
    labels: list[str]
    access: str  # "public" (any caller may classify with it) or "private" (its owner only)
    state: bytes | None  # serialised weights; None in listings
    num_samples: int
    created_at: float
    updated_at: float
    updated_number: int = 0
    used_at: float | None = None
    used_number: int = 0
    version: int = 1


class ClassifierStore(ABC):
    """What the classify engine needs from persistence; SQLite by default, another database later."""

    @abstractmethod
    def create(self, record: ClassifierRecord, *, max_per_owner: int) -> None:
        """Insert a new classifier; `ResourceLimitError` when its owner already has `max_per_owner`."""

    @abstractmethod
    def get(self, classifier_id: str) -> ClassifierRecord | None: ...

    @abstractmethod
    def replace(self, record: ClassifierRecord, *, expected_version: int) -> bool:
        """Write `record` (its version becomes expected_version + 1) if the stored row still has
        `expected_version`; False when another writer got there first or the row is gone."""

    @abstractmethod
    def delete(self, classifier_id: str, owner: str) -> bool: ...

    @abstractmethod
    def owned_by(self, owner: str) -> list[ClassifierRecord]:
        """The owner's classifiers, oldest first, without their weights (`state` is None)."""

    @abstractmethod
    def mark_used(self, classifier_id: str, when: float) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (on shutdown)."""


_COLUMNS = ("id, owner, model, input_task, dims, labels, access, state, num_samples, created_at, updated_at, "
            "updated_number, used_at, used_number, version")
_LIST_COLUMNS = _COLUMNS.replace("state, ", "")


def _record(row: sqlite3.Row) -> ClassifierRecord:
    keys = row.keys()
    return ClassifierRecord(
        id=row["id"], owner=row["owner"], model=row["model"], input_task=row["input_task"], dims=int(row["dims"]),
        labels=list(json.loads(row["labels"])), access=row["access"],
        state=bytes(row["state"]) if "state" in keys else None, num_samples=int(row["num_samples"]),
        created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
        updated_number=int(row["updated_number"]), used_at=row["used_at"], used_number=int(row["used_number"]),
        version=int(row["version"]))


class SQLiteClassifierStore(ClassifierStore):
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(COMPONENT, MIGRATIONS)

    def create(self, record: ClassifierRecord, *, max_per_owner: int) -> None:
        with self.db.transaction() as conn:  # count and insert in one write transaction: no race past the cap
            (count,) = conn.execute("SELECT COUNT(*) FROM classifiers WHERE owner = ?", (record.owner,)).fetchone()
            if count >= max_per_owner:
                raise ResourceLimitError(
                    f"Classifier limit reached: {count} classifiers stored, at most {max_per_owner} allowed "
                    f"(setting max_classifiers). Delete one with DELETE /v1/classifiers/{{id}}, or update an "
                    f"existing one by sending its classifier_id to /v1/train.")
            conn.execute(f"INSERT INTO classifiers ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                         _values(replace(record, version=1)))

    def get(self, classifier_id: str) -> ClassifierRecord | None:
        row = self.db.connection().execute(f"SELECT {_COLUMNS} FROM classifiers WHERE id = ?",
                                           (classifier_id,)).fetchone()
        return _record(row) if row else None

    def replace(self, record: ClassifierRecord, *, expected_version: int) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE classifiers SET model = ?, input_task = ?, dims = ?, labels = ?, access = ?, state = ?, "
                "num_samples = ?, updated_at = ?, updated_number = ?, version = ? WHERE id = ? AND version = ?",
                (record.model, record.input_task, record.dims, json.dumps(record.labels), record.access,
                 record.state, record.num_samples, record.updated_at, record.updated_number, expected_version + 1,
                 record.id, expected_version))
            return cur.rowcount == 1

    def delete(self, classifier_id: str, owner: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM classifiers WHERE id = ? AND owner = ?", (classifier_id, owner))
            return cur.rowcount == 1

    def owned_by(self, owner: str) -> list[ClassifierRecord]:
        rows = self.db.connection().execute(
            f"SELECT {_LIST_COLUMNS} FROM classifiers WHERE owner = ? ORDER BY created_at, id", (owner,)).fetchall()
        return [_record(r) for r in rows]

    def mark_used(self, classifier_id: str, when: float) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE classifiers SET used_number = used_number + 1, used_at = ? WHERE id = ?",
                         (when, classifier_id))

    def close(self) -> None:
        self.db.close()


def _values(r: ClassifierRecord) -> tuple:
    return (r.id, r.owner, r.model, r.input_task, r.dims, json.dumps(r.labels), r.access, r.state, r.num_samples,
            r.created_at, r.updated_at, r.updated_number, r.used_at, r.used_number, r.version)
