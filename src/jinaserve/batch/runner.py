"""The batch pipeline: start units (lines or chunks of rows) on the background lane, keep enough of them in
flight to fill the batcher's batches, and commit their results strictly in input order.

A commit appends the results to the sink (append-only files), flushes them, then records — in one store
transaction — the cursor after the last committed unit together with the sink's new lengths and the
counters. Anything after the last commit is redone on resume (and cut from the files), so every input
appears in the output exactly once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InferenceError, JinaServeError, ShuttingDownError
from ..store.jobs import Progress

log = logging.getLogger("jinaserve.batch")

# Items kept in flight on the background lane: a few full batches, so the batcher never waits for the job.
DEFAULT_MAX_IN_FLIGHT = 1024
COMMIT_EVERY_S = 0.5


@dataclass
class UnitResult:
    records: list[Any] = field(default_factory=list)  # what the sink writes, in order
    completed: int = 0
    failed: int = 0
    tokens: int = 0


@dataclass
class Unit:
    next_line: int  # the job's cursor once this unit is committed
    next_offset: int  # input byte offset (or row) after this unit
    start: Callable[[], Any]  # plans and queues; returns a `Pending` (or raises a JinaServeError)
    collect: Callable[[Any], UnitResult]  # the result, or the JinaServeError it raised → records
    n_items: int = 1


class Sink(Protocol):
    def write(self, records: list[Any]) -> None: ...

    def flush(self) -> dict[str, Any]:
        """Make written records durable against a process crash; return the state to commit."""
        ...


class Stopped(Exception):
    """The job must stop now (shutdown, cancel, expiry); nothing past the last commit counts."""


def run_units(units: Iterable[Unit], *, sink: Sink, commit: Callable[[Progress], bool],
              should_stop: Callable[[], bool], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
              on_commit: Callable[[Progress], None] | None = None) -> bool:
    """Run every unit; True when all were committed, False when stopped (shutdown, cancel, expiry)."""
    window: deque[tuple[Unit, Any]] = deque()
    in_flight = 0
    acc = _Batch()
    last_commit = time.monotonic()

    def flush_commit() -> bool:
        nonlocal last_commit
        last_commit = time.monotonic()
        if acc.unit is None:
            return True
        sink.write(acc.records)
        progress = Progress(acc.unit.next_line, acc.unit.next_offset, sink.flush(), acc.completed, acc.failed,
                            acc.tokens)
        acc.reset()
        if not commit(progress):
            return False
        if on_commit is not None:
            on_commit(progress)
        return True

    def settle_oldest() -> None:
        nonlocal in_flight
        unit, pending = window.popleft()
        in_flight -= unit.n_items
        acc.add(unit, unit.collect(_outcome(pending)))

    try:
        for unit in units:
            if should_stop():
                raise Stopped
            try:
                pending: Any = unit.start()
            except JinaServeError as exc:
                pending = exc
            except Exception as exc:  # a bug while planning one unit: that unit fails, the job goes on
                log.error("batch unit could not start: %r", exc, exc_info=exc)
                pending = InferenceError(f"Inference failed: {type(exc).__name__}")
            window.append((unit, pending))
            in_flight += unit.n_items
            time.sleep(0)  # hand the GIL over: the event loop serving online requests comes first
            while window and (in_flight >= max_in_flight or _done(window[0][1])):
                settle_oldest()
            if time.monotonic() - last_commit >= COMMIT_EVERY_S and not flush_commit():
                raise Stopped
        while window:
            if should_stop():
                raise Stopped
            settle_oldest()
            if time.monotonic() - last_commit >= COMMIT_EVERY_S and not flush_commit():
                raise Stopped
        return flush_commit()
    except Stopped:
        for _unit, pending in window:
            if not isinstance(pending, BaseException):
                pending.cancel()
        return False


class _Batch:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records: list[Any] = []
        self.unit: Unit | None = None
        self.completed = self.failed = self.tokens = 0

    def add(self, unit: Unit, result: UnitResult) -> None:
        self.records.extend(result.records)
        self.unit = unit
        self.completed += result.completed
        self.failed += result.failed
        self.tokens += result.tokens


def _done(pending: Any) -> bool:
    return isinstance(pending, BaseException) or pending.done()


def _outcome(pending: Any) -> Any:
    """The unit's result, or the JinaServeError it failed with; Stopped when the work was cancelled."""
    if isinstance(pending, BaseException):
        return pending
    try:
        return pending.result()
    except (CancelledError, ShuttingDownError):
        raise Stopped from None
    except JinaServeError as exc:
        return exc
    except Exception as exc:  # a bug in a family: the line fails, the job goes on
        log.error("batch unit failed: %r", exc, exc_info=exc)
        return InferenceError(f"Inference failed: {type(exc).__name__}")
