"""Admission control for one model's queue: by estimated wait, and by what the queue holds.

A request is refused *before* it waits, with an answer the client can act on:

* 413 when it can never fit: more items than `max_queue_items`, more tokens than `max_queue_tokens` or
  more image-tensor bytes than `max_queue_bytes` on its own (retrying cannot help; the message names the
  limit);
* 429 + `Retry-After` when the queue is too full now: what is ahead plus its own would pass one of those
  caps, or the estimated wait for its answer is over `max_wait_s`. `Retry-After` is the estimated time
  until the queue has drained enough. A request alone on an idle model is always admitted, however long
  it takes.

The estimated wait is the tokens queued or running, plus the larger of the request's own tokens and a
recent batch, ÷ the model's measured tokens per second. The batch term is there because a request finishes
with the batch it runs in, which requests admitted after it may fill up to the batch budget: on a slow
device one big batch alone can take most of the allowed wait.

The outstanding work is counted from admission until each item's future is done (run, failed or
cancelled), so it covers the queue and the batch running now. The throughput is measured from the
batcher's own batches (padded tokens per second of forward passes, decayed with a half-life of
`half_life_s` seconds of busy time), so it follows the model, the hardware and the load. A first estimate
comes from `calibrate` at load (two small forward passes, the first one discarded as warm-up): small
batches run fewer tokens per second than a loaded server's, so that first estimate errs on the safe side
(early 429s rather than long waits) and real batches replace it within seconds of load.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import OverloadedError, PayloadTooLargeError
from ..jobs import EmbedInput, EmbedOptions, RerankDocument, RerankJob
from ..models.base import WorkItem

log = logging.getLogger("jinaserve.admission")

# The probe of `calibrate`: 4 inputs of about 32 tokens.
_PROBE = "jinaserve measures the throughput of this model once, at load, with a short text like this one."


class QueueLimitError(PayloadTooLargeError):
    """A request bigger than the model's queue can ever hold (HTTP 413)."""


class Admission:
    def __init__(self, model: str, *, max_wait_s: float | None = 30.0, max_queue_items: int = 8192,
                 max_queue_tokens: int | None = None, max_queue_bytes: int | None = None,
                 half_life_s: float = 10.0) -> None:
        self.model = model
        self.max_wait_s = max_wait_s if max_wait_s else None
        self.max_items = max(1, max_queue_items)
        self.max_tokens = max_queue_tokens if max_queue_tokens else None
        self.max_bytes = max_queue_bytes if max_queue_bytes else None
        self.half_life_s = half_life_s
        self._lock = threading.Lock()
        self._items = 0
        self._tokens = 0
        self._bytes = 0
        self._busy_tokens = 0.0  # decayed sums over recent batches
        self._busy_seconds = 0.0
        self._recent_batch = 0.0  # padded tokens of a recent big batch (a decaying maximum)

    # ------------------------------------------------------------------ throughput
    def observe(self, size: int, padded_tokens: int, seconds: float) -> None:
        """Batch observer: one forward pass of `padded_tokens` took `seconds`."""
        if seconds <= 0:
            return
        with self._lock:
            keep = 0.5 ** (seconds / self.half_life_s)
            self._busy_tokens = self._busy_tokens * keep + padded_tokens
            self._busy_seconds = self._busy_seconds * keep + seconds
            self._recent_batch = max(float(padded_tokens), self._recent_batch * keep)

    def calibrate(self, family: Any) -> None:
        """A first throughput estimate before any request: a small batch through `family.run_batch` twice
        (the first pass pays one-time costs and is not counted). Failures only leave the estimate empty."""
        if self.max_wait_s is None:
            return
        try:
            if family.spec.kind == "rerank":
                plan = family.plan_rerank(RerankJob(self.model, "probe", [RerankDocument(text=_PROBE)] * 4))
            else:
                plan = family.plan_embed([EmbedInput(text=_PROBE)] * 4, EmbedOptions(truncate=True))
            items = [it for it in plan.items if it.group == plan.items[0].group][:8]
            payloads = [it.payload for it in items]
            family.run_batch(payloads)
            started = time.perf_counter()
            family.run_batch(payloads)
            self.observe(len(items), max(it.n_tokens for it in items) * len(items), time.perf_counter() - started)
        except Exception as exc:  # a probe must never stop a model from serving
            log.debug("throughput probe of %s failed: %r", self.model, exc)

    @property
    def tokens_per_second(self) -> float | None:
        with self._lock:
            if self._busy_seconds < 0.02:  # not enough measured yet
                return None
            return self._busy_tokens / self._busy_seconds

    @property
    def outstanding(self) -> tuple[int, int]:
        """(items, tokens) admitted and not done yet."""
        with self._lock:
            return self._items, self._tokens

    def estimated_wait_s(self, own_tokens: int = 0) -> float:
        """Seconds until a request of `own_tokens` admitted now would be answered; 0 on an idle model or
        without an estimate."""
        rate = self.tokens_per_second
        with self._lock:
            if not rate or not self._items:
                return 0.0
            return (self._tokens + max(own_tokens, self._recent_batch)) / rate

    def _seconds_for(self, tokens: float) -> int:
        rate = self.tokens_per_second
        return max(1, math.ceil(tokens / rate)) if rate else 1

    # ------------------------------------------------------------------ decisions
    def precheck(self) -> None:
        """Before any work on a request (tokenising, downloads): 429 if the wait is already too long."""
        if self.max_wait_s is None:
            return
        wait = self.estimated_wait_s()
        if wait > self.max_wait_s:
            rate = self.tokens_per_second
            raise self._too_long(wait, self.outstanding[1] / rate if rate else 0.0)

    def _too_long(self, wait: float, ahead: float | None = None) -> OverloadedError:
        """`wait`: the estimated time to the answer; `ahead`: the part of it that is other work (when the
        request's own part alone is over the limit, it can start only once the queue is empty)."""
        assert self.max_wait_s is not None
        retry = wait - self.max_wait_s if ahead is None or wait - ahead < self.max_wait_s else ahead
        return OverloadedError(
            f"Model {self.model!r} is busy: the estimated wait is {wait:.0f} s, over the limit of "
            f"{self.max_wait_s:g} s (max_queue_wait_s); retry after the Retry-After seconds.",
            retry_after_s=max(1, math.ceil(retry)))

    def admit(self, items: Sequence[WorkItem], *, timed: bool = True) -> tuple[int, int, int]:
        """Reserve room for `items` or raise (413 / 429). Returns the (items, tokens, bytes) reserved, to
        `release` if they never reach the queue (`track` releases each item when its future is done).
        `timed=False` skips the wait limit (in-process callers, who block instead of retrying)."""
        n = (len(items), sum(it.n_tokens for it in items), sum(it.nbytes for it in items))
        caps = ((self.max_items, "inputs", "max_queue_items"), (self.max_tokens, "tokens", "max_queue_tokens"),
                (self.max_bytes, "bytes of image tensors", "max_queue_image_mb"))
        for want, (cap, what, setting) in zip(n, caps, strict=True):
            if cap is not None and want > cap:
                limit = f"{setting}={cap // 2**20}" if setting == "max_queue_image_mb" else f"{setting}={cap}"
                raise QueueLimitError(f"The request has {want} {what}, more than model {self.model!r} can ever "
                                      f"queue ({limit}); split it into smaller requests.")
        rate = self.tokens_per_second if timed and self.max_wait_s is not None else None
        with self._lock:
            held = (self._items, self._tokens, self._bytes)
            full = [(h, w, cap, setting) for h, w, (cap, _, setting) in zip(held, n, caps, strict=True)
                    if cap is not None and h + w > cap]
            # the estimated time to this request's answer: the work ahead and its own (0 on an idle model)
            wait = (held[1] + max(n[1], self._recent_batch)) / rate if rate and held[0] else 0.0
            if not full and not (self.max_wait_s is not None and wait > self.max_wait_s):
                self._items, self._tokens, self._bytes = (h + w for h, w in zip(held, n, strict=True))
                return n
            # Retry-After: the time to drain the share of the queued tokens that stands in the way
            share = max(((h + w - cap) / max(1, h) for h, w, cap, _ in full), default=0.0)
        if not full:
            raise self._too_long(wait, held[1] / rate if rate else 0.0)
        h, _, cap, setting = full[0]
        what = dict(zip((c[2] for c in caps), (c[1] for c in caps), strict=True))[setting]
        amount = (f"{h / 2**20:.0f} MiB of image tensors queued or running, limit {cap // 2**20} MiB"
                  if setting == "max_queue_image_mb" else f"{h} {what} queued or running, limit {cap}")
        raise OverloadedError(f"Model {self.model!r} queue is full ({amount}: {setting}); retry after the "
                              f"Retry-After seconds.", retry_after_s=self._seconds_for(held[1] * min(1.0, share)))

    def release(self, n_items: int, n_tokens: int, n_bytes: int = 0) -> None:
        with self._lock:
            self._items -= n_items
            self._tokens -= n_tokens
            self._bytes -= n_bytes

    def track(self, items: Sequence[WorkItem], futures: Sequence[Future]) -> None:
        """Release each admitted item when its future is done."""
        for item, fut in zip(items, futures, strict=True):
            fut.add_done_callback(lambda _f, t=item.n_tokens, b=item.nbytes: self.release(1, t, b))
