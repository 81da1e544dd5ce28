"""Dynamic batching: items from concurrent requests share forward passes.

Items are queued with a token count. A single worker thread repeatedly takes the oldest waiting item,
gathers the waiting items of the same group whose lengths are closest to it (so padding stays small),
stops when the padded batch would exceed `max_batch_tokens` or `max_batch_size`, and runs the batch.
Results go back through `concurrent.futures.Future`s, so both asyncio handlers (via
`asyncio.wrap_future`) and plain threads (the in-process API) can wait on them.

The queue is bounded: `submit` raises `OverloadedError` (→ 429 + Retry-After) when it is full.

Background lane (batch jobs): `submit(items, background=True)` queues items that run only when no online
item is waiting. They bypass the online queue limit (a job bounds its own in-flight items). While online
traffic is recent (`ONLINE_RECENT_S`), a background batch is capped at about half an online batch (an EMA of
the online batches' padded tokens) and is followed by a rest as long as it ran (cut short by any online
arrival), so an online request waits at most about one small batch and finds the CPU free half the time;
when online traffic is idle, background batches run back to back with the full budget for throughput.
A batch that raises is retried item by item, so one bad input fails only its own request.
Cancelled futures (a client that went away) are dropped before they reach the model.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import InferenceError, JinaServeError, OverloadedError, ShuttingDownError
from ..models.base import WorkItem

log = logging.getLogger("jinaserve.batcher")

BatchObserver = Callable[[int, int, float], None]  # (batch size, padded tokens, seconds)

# Background lane: how long after the last online submission background batches stay small, and their
# size then, as a fraction of an online batch's padded tokens.
ONLINE_RECENT_S = 1.0
BACKGROUND_SHARE_WHILE_ONLINE = 0.5


@dataclass(order=True)
class _Queued:
    seq: int
    item: WorkItem = field(compare=False)
    future: Future = field(compare=False)
    enqueued_at: float = field(compare=False, default=0.0)


class Batcher:
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Any]], list[Any]],
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_queue_items: int = 8192,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self.max_batch_tokens = max(1, max_batch_tokens)
        self.max_batch_size = max(1, max_batch_size)
        self.max_queue_items = max(1, max_queue_items)
        self._observer = observer
        self._pending: list[_Queued] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._busy_items = 0
        self._background: list[_Queued] = []
        self._last_online = float("-inf")
        self._online_tokens_ema: float | None = None  # padded tokens of recent online batches
        self._background_rest_until = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name=f"batcher-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, drain: bool = True, timeout: float | None = 30.0) -> None:
        """Stop the worker. With `drain`, items already queued are still run first."""
        with self._cond:
            self._stopping = True
            if not drain:
                for q in self._pending:
                    q.future.set_exception(ShuttingDownError())
                self._pending.clear()
            for q in self._background:  # background work never holds up a shutdown: its job resumes later
                q.future.cancel()
            self._background.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return len(self._pending)

    @property
    def background_depth(self) -> int:
        with self._cond:
            return len(self._background)

    @property
    def in_flight(self) -> int:
        return self._busy_items

    # ------------------------------------------------------------------ submission
    def submit(self, items: list[WorkItem], *, background: bool = False) -> list[Future]:
        futures: list[Future] = [Future() for _ in items]
        if not items:
            return futures
        now = time.perf_counter()
        with self._cond:
            if self._stopping:
                raise ShuttingDownError()
            if background:  # no queue limit: the job bounds its own in-flight items
                self._background.extend(_Queued(next(self._seq), item, fut, now)
                                        for item, fut in zip(items, futures, strict=True))
                self._cond.notify()
                return futures
            self._last_online = now
            if len(self._pending) + len(items) > self.max_queue_items:
                raise OverloadedError(
                    f"Model {self.name!r} queue is full ({len(self._pending)} items waiting, limit "
                    f"{self.max_queue_items}); retry later.",
                    retry_after_s=1,
                )
            for item, fut in zip(items, futures, strict=True):
                self._pending.append(_Queued(next(self._seq), item, fut, now))
            self._cond.notify()
        return futures

    # ------------------------------------------------------------------ worker
    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._background and not self._stopping:
                    self._cond.wait()
                if not self._pending and not self._background and self._stopping:
                    return
                batch = self._take_batch()
                online = bool(batch)
                if not batch and self._background:
                    rest = self._background_rest_until - time.perf_counter()
                    if rest > 0 and not self._stopping:
                        self._cond.wait(rest)  # an online arrival wakes this at once
                        continue
                    batch = self._take_background()
                self._busy_items = len(batch)
            if batch:
                started = time.perf_counter()
                self._execute(batch, online=online)
                if not online and started - self._last_online < ONLINE_RECENT_S:
                    # While online traffic is recent, background work gets at most half the time: after a
                    # background batch the model rests as long as it ran, unless an online item comes.
                    self._background_rest_until = time.perf_counter() + (time.perf_counter() - started)
            self._busy_items = 0

    def _take_background(self) -> list[_Queued]:
        """A background batch (lock held, no online item waiting): full budget when online traffic is idle,
        about half an online batch while it is recent."""
        if time.perf_counter() - self._last_online >= ONLINE_RECENT_S:
            self._background, batch = self._take_window(self._background, self.max_batch_tokens)
            return batch
        # Online traffic is recent: the oldest items in order, no sorting (cheap, as batches are small).
        budget = max(1, int((self._online_tokens_ema or 0) * BACKGROUND_SHARE_WHILE_ONLINE))
        taken, longest, n = [], 0, 0
        for n, q in enumerate(self._background, start=1):
            if q.future.cancelled():
                continue
            longest = max(longest, q.item.n_tokens)
            if taken and (longest * (len(taken) + 1) > budget or len(taken) >= self.max_batch_size):
                n -= 1
                break
            taken.append(q)
        del self._background[:n]
        return [q for q in taken if q.future.set_running_or_notify_cancel()]

    def _take_batch(self) -> list[_Queued]:
        """Pick the online batch around the oldest item (called with the lock held)."""
        self._pending, batch = self._take_window(self._pending, self.max_batch_tokens)
        return batch

    def _take_window(self, queue: list[_Queued], max_tokens: int) -> tuple[list[_Queued], list[_Queued]]:
        """(what stays queued, the batch around the queue's oldest item under `max_tokens`)."""
        # Drop items whose waiter went away.
        live = [q for q in queue if not q.future.cancelled()]
        if not live:
            return [], []
        oldest = live[0]
        same_group = [q for q in live if q.item.group == oldest.item.group]
        same_group.sort(key=lambda q: (q.item.n_tokens, q.seq))
        pos = same_group.index(oldest)
        lo, hi = pos, pos + 1  # chosen window is same_group[lo:hi]
        longest = oldest.item.n_tokens
        while hi - lo < self.max_batch_size:
            options: list[tuple[int, str]] = []
            if lo > 0:
                options.append((max(longest, same_group[lo - 1].item.n_tokens) * (hi - lo + 1), "L"))
            if hi < len(same_group):
                options.append((max(longest, same_group[hi].item.n_tokens) * (hi - lo + 1), "R"))
            feasible = [o for o in options if o[0] <= max_tokens]
            if not feasible:
                break
            _, side = min(feasible)
            if side == "L":
                lo -= 1
                longest = max(longest, same_group[lo].item.n_tokens)
            else:
                longest = max(longest, same_group[hi].item.n_tokens)
                hi += 1
        chosen = same_group[lo:hi]
        chosen_ids = {id(q) for q in chosen}
        remaining = [q for q in live if id(q) not in chosen_ids]
        runnable = [q for q in chosen if q.future.set_running_or_notify_cancel()]
        runnable.sort(key=lambda q: q.seq)
        return remaining, runnable

    def _execute(self, batch: list[_Queued], online: bool = True) -> None:
        started = time.perf_counter()
        payloads = [q.item.payload for q in batch]
        try:
            outputs = self._run_batch(payloads)
            if len(outputs) != len(batch):
                raise RuntimeError(f"family returned {len(outputs)} outputs for {len(batch)} items")
        except Exception as exc:
            if len(batch) > 1:
                log.warning("batch of %d failed on %s (%s); retrying items one by one",
                            len(batch), self.name, exc)
                for q in batch:
                    self._execute_single(q)
                return
            self._fail(batch[0], exc)
            return
        padded = max(q.item.n_tokens for q in batch) * len(batch)
        if online:
            ema = self._online_tokens_ema
            self._online_tokens_ema = padded if ema is None else ema + 0.3 * (padded - ema)
        self._observe(len(batch), padded, started)
        for q, out in zip(batch, outputs, strict=True):
            q.future.set_result(out)

    def _execute_single(self, q: _Queued) -> None:
        started = time.perf_counter()
        try:
            out = self._run_batch([q.item.payload])[0]
        except Exception as exc:
            self._fail(q, exc)
            return
        self._observe(1, q.item.n_tokens, started)
        q.future.set_result(out)

    def _fail(self, q: _Queued, exc: Exception) -> None:
        if isinstance(exc, JinaServeError):
            q.future.set_exception(exc)
            return
        log.error("inference failed on %s: %r", self.name, exc, exc_info=exc)
        q.future.set_exception(InferenceError(f"Inference failed for model {self.name!r}: "
                                              f"{type(exc).__name__}"))

    def _observe(self, size: int, tokens: int, started: float) -> None:
        if self._observer is not None:
            try:
                self._observer(size, tokens, time.perf_counter() - started)
            except Exception:
                log.debug("batch observer failed", exc_info=True)
