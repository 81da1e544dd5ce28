"""Exact-match embedding cache (off by default; `--cache-size N`).

Key: (served model, task, truncate, text) → the model's raw vector for that text (before the Matryoshka cut,
normalisation and encoding, which are applied per request as usual, so one entry serves every `dimensions`,
`normalized` and `embedding_type`) plus its token count (usage stays what the computation would report).
Only plain text inputs of requests without `late_chunking` / `return_multivector` are cached (their vectors
depend on the other inputs, or are not one vector); images and token-id inputs always run.

In memory: an LRU of at most `cache_size` entries (a lock-protected OrderedDict; hits skip planning, the
queue and the model). Optionally (`--cache-persist`) the entries are also written to the embedded store
(`data_dir`'s SQLite, table `embedding_cache`, at most `PERSIST_FACTOR × cache_size` rows, oldest dropped),
and memory misses look there, so the cache survives restarts. Metrics: `jinaserve_cache_hits_total`,
`jinaserve_cache_misses_total` per model.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter

from .. import metrics
from ..jobs import EmbedInput, EmbedOptions

log = logging.getLogger("jinaserve.cache")

HITS = Counter("jinaserve_cache_hits_total", "Embedding cache hits (inputs)", ["model"], registry=metrics.REGISTRY)
MISSES = Counter("jinaserve_cache_misses_total", "Embedding cache misses (inputs)", ["model"],
                 registry=metrics.REGISTRY)
PERSIST_FACTOR = 10
_MIGRATIONS = ["""
CREATE TABLE embedding_cache (
    key BLOB PRIMARY KEY,
    vector BLOB NOT NULL,
    n_tokens INTEGER NOT NULL,
    stored INTEGER NOT NULL
);
CREATE INDEX embedding_cache_stored ON embedding_cache(stored);
"""]


def cache_key(model: str, text: str, options: EmbedOptions) -> bytes:
    """sha256 over the fields that decide the raw vector (the text is hashed, never stored)."""
    h = hashlib.sha256()
    for part in (model, options.task or "", "t" if options.truncate else "f", text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


@dataclass
class CacheSplit:
    """A request's inputs split into cache hits and the inputs still to compute."""

    keys: list[bytes | None]
    hits: dict[int, tuple[np.ndarray, int]]
    missing: list[int]
    inputs: Sequence[EmbedInput] = field(repr=False, default=())

    @property
    def missing_inputs(self) -> list[EmbedInput]:
        return [self.inputs[i] for i in self.missing]

    def merge(self, computed: list[np.ndarray], total_tokens: int) -> tuple[list[np.ndarray], int]:
        """All vectors in request order, and the request's token count (hits count as computed)."""
        out: list[np.ndarray | None] = [None] * len(self.keys)
        for i, (vec, _) in self.hits.items():
            out[i] = vec
        for i, vec in zip(self.missing, computed, strict=True):
            out[i] = vec
        return out, total_tokens + sum(n for _, n in self.hits.values())  # type: ignore[return-value]


class EmbeddingCache:
    def __init__(self, model: str, max_entries: int, store: Any | None = None) -> None:
        self.model = model
        self.max_entries = int(max_entries)
        self._lru: OrderedDict[bytes, tuple[np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._store = store
        self._hits, self._misses = HITS.labels(model), MISSES.labels(model)
        if store is not None:
            store.migrate("embedding_cache", _MIGRATIONS)

    def __len__(self) -> int:
        return len(self._lru)

    # ---------------------------------------------------------------- look-up
    def split(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> CacheSplit | None:
        """None when nothing of this request is cacheable (then it runs as without a cache)."""
        if options.late_chunking or options.return_multivector:
            return None
        keys = [cache_key(self.model, x.text, options) if x.text is not None and x.image is None
                and x.token_ids is None else None for x in inputs]
        if not any(k is not None for k in keys):
            return None
        hits: dict[int, tuple[np.ndarray, int]] = {}
        for i, k in enumerate(keys):
            if k is not None and (entry := self.get(k)) is not None:
                hits[i] = entry
        n_keys = sum(k is not None for k in keys)
        self._hits.inc(len(hits))
        self._misses.inc(n_keys - len(hits))
        return CacheSplit(keys, hits, [i for i in range(len(inputs)) if i not in hits], inputs)

    def get(self, key: bytes) -> tuple[np.ndarray, int] | None:
        with self._lock:
            entry = self._lru.get(key)
            if entry is not None:
                self._lru.move_to_end(key)
                return entry
        if self._store is None:
            return None
        row = self._store.connection().execute("SELECT vector, n_tokens FROM embedding_cache WHERE key = ?",
                                               (key,)).fetchone()
        if row is None:
            return None
        entry = (np.frombuffer(row["vector"], dtype="<f4").copy(), int(row["n_tokens"]))
        self._remember(key, entry)
        return entry

    # ---------------------------------------------------------------- filling
    def store(self, split: CacheSplit, computed: list[np.ndarray], item_tokens: list[int]) -> None:
        """Remember the computed vectors of the split's missing inputs (one token count per missing input)."""
        rows = []
        for i, vec, n in zip(split.missing, computed, item_tokens, strict=True):
            key = split.keys[i]
            arr = np.asarray(vec, dtype=np.float32)
            if key is None or arr.ndim != 1:
                continue
            arr = arr.copy()
            arr.setflags(write=False)
            self._remember(key, (arr, int(n)))
            rows.append((key, arr.astype("<f4").tobytes(), int(n)))
        if self._store is not None and rows:
            self._persist(rows)

    def _remember(self, key: bytes, entry: tuple[np.ndarray, int]) -> None:
        with self._lock:
            self._lru[key] = entry
            self._lru.move_to_end(key)
            while len(self._lru) > self.max_entries:
                self._lru.popitem(last=False)

    def _persist(self, rows: list[tuple[bytes, bytes, int]]) -> None:
        import time

        now = time.time_ns()
        with self._store.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO embedding_cache(key, vector, n_tokens, stored) "
                             "VALUES (?, ?, ?, ?)", [(k, v, n, now) for k, v, n in rows])
            limit = PERSIST_FACTOR * self.max_entries
            conn.execute("DELETE FROM embedding_cache WHERE key IN (SELECT key FROM embedding_cache ORDER BY "
                         "stored DESC LIMIT -1 OFFSET ?)", (limit,))


def build_cache(model: str, settings: Any) -> EmbeddingCache | None:
    """The cache of one served model from the settings (None when `cache_size` is 0)."""
    if not getattr(settings, "cache_size", 0):
        return None
    store = None
    if getattr(settings, "cache_persist", False):
        from ..store.db import open_database

        store = open_database(settings.data_dir)
    log.info("%s: embedding cache of %d entries%s", model, settings.cache_size,
             f", persisted in {store.path}" if store is not None else "")
    return EmbeddingCache(model, settings.cache_size, store)


__all__ = ["CacheSplit", "EmbeddingCache", "build_cache", "cache_key"]
