"""Label embeddings of zero-shot classification, computed once per (model, task, label).

A bounded LRU (by bytes: vector + key), shared by every request of one server or `Embedder`. Requests
that need a label another request is already embedding wait for that result instead of embedding it
again (single flight); if that request is cancelled (its client went away), a waiter embeds it itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter

from .. import metrics

LOOKUPS = Counter("jinaserve_classify_label_cache_total", "Zero-shot label embeddings looked up in the label "
                  "cache, by result (hit: no forward pass; miss: embedded)", ["model", "result"],
                  registry=metrics.REGISTRY)

_KEY_OVERHEAD = 200  # bytes per entry beyond the vector and the label text (dict slot, tuple, objects)


@dataclass(frozen=True)
class LabelKey:
    model: str
    task: str | None
    label: str


@dataclass(frozen=True)
class LabelVector:
    vector: np.ndarray  # unit length, float32
    n_tokens: int


class _Abandoned(Exception):
    """The request computing a label was cancelled; whoever waited on it computes it instead."""


class LabelCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[Hashable, tuple[LabelVector, int]] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[LabelKey],
                       compute: Callable[[list[LabelKey]], Awaitable[list[LabelVector]]]) -> list[LabelVector]:
        """One vector per key (in order); `compute` embeds the keys nobody has (or is computing)."""
        found: dict[LabelKey, LabelVector] = {}
        todo = list(dict.fromkeys(keys))
        while todo:
            own, waits = self._claim(todo, found)
            if own:
                try:
                    values = await compute(own)
                except BaseException as exc:
                    self._release(own, exc)
                    raise
                self._fill(own, values)
                found.update(zip(own, values, strict=True))
            for key, fut in waits.items():
                try:  # shielded: our own cancellation must not cancel the shared future
                    found[key] = await asyncio.shield(asyncio.wrap_future(fut))
                except _Abandoned:
                    pass  # its owner was cancelled: claimed again on the next round
            todo = [k for k in todo if k not in found]
        return [found[k] for k in keys]

    def _claim(self, keys: list[LabelKey], found: dict[LabelKey, LabelVector]
               ) -> tuple[list[LabelKey], dict[LabelKey, Future]]:
        own: list[LabelKey] = []
        waits: dict[LabelKey, Future] = {}
        hits = 0
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    found[key] = entry[0]
                    hits += 1
                elif key in self._pending:
                    waits[key] = self._pending[key]
                else:
                    self._pending[key] = Future()
                    own.append(key)
        if keys:
            model = keys[0].model
            if hits:
                LOOKUPS.labels(model, "hit").inc(hits)
            if own:
                LOOKUPS.labels(model, "miss").inc(len(own))
        return own, waits

    def _fill(self, keys: list[LabelKey], values: list[LabelVector]) -> None:
        with self._lock:
            for key, value in zip(keys, values, strict=True):
                fut = self._pending.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(value)
                if self.max_bytes == 0 or key in self._entries:
                    continue
                size = value.vector.nbytes + len(key.label) + len(key.model) + _KEY_OVERHEAD
                if size > self.max_bytes:
                    continue
                self._entries[key] = (value, size)
                self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                _, (_, size) = self._entries.popitem(last=False)
                self._bytes -= size

    def _release(self, keys: list[LabelKey], exc: BaseException) -> None:
        """The computation failed: waiters get the same error (same label, same failure), or, when it was
        cancelled rather than failed, a signal to compute the label themselves."""
        err = exc if isinstance(exc, Exception) else _Abandoned()
        with self._lock:
            for key in keys:
                fut = self._pending.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(err)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
