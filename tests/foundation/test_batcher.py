"""Unit tests of the dynamic batcher: ordering, token budget, grouping, back-pressure, cancellation,
failure isolation, shutdown. `run_batch` here is a plain function over payloads (the batcher's whole
contract with a model family); it records every batch it is given."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait

import pytest

from jinaserve.engine.batcher import Batcher
from jinaserve.errors import InferenceError, InvalidInputError, OverloadedError, ShuttingDownError
from jinaserve.models.base import WorkItem

TIMEOUT = 10.0


class Recorder:
    """run_batch that returns payload * 10, records batches, and can be held closed by a gate."""

    def __init__(self, fail_on: set[int] | None = None, raise_typed: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on = fail_on or set()
        self.raise_typed = raise_typed

    def __call__(self, payloads: list[int]) -> list[int]:
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        self.batches.append(list(payloads))
        bad = self.fail_on.intersection(payloads)
        if bad:
            if self.raise_typed:
                raise InvalidInputError(f"bad payload {min(bad)}")
            raise RuntimeError(f"boom on {sorted(bad)}")
        return [p * 10 for p in payloads]


def items(payloads: list[int], tokens: list[int] | None = None, group=None) -> list[WorkItem]:
    tokens = tokens or [1] * len(payloads)
    return [WorkItem(p, t, group) for p, t in zip(payloads, tokens, strict=True)]


@pytest.fixture
def make_batcher():
    made: list[Batcher] = []

    def make(run, **kw) -> Batcher:
        b = Batcher("test", run, **kw)
        b.start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop(drain=False, timeout=TIMEOUT)


def hold(rec: Recorder, b: Batcher) -> Future:
    """Occupy the worker with one item so later submissions queue up together."""
    rec.gate.clear()
    rec.entered.clear()
    fut = b.submit(items([-1]))[0]
    assert rec.entered.wait(TIMEOUT)
    return fut


def test_results_follow_their_items(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=1000, max_batch_size=8)
    first = hold(rec, b)
    futs = b.submit(items(list(range(20)), tokens=[(i * 7) % 13 + 1 for i in range(20)]))
    rec.gate.set()
    assert [f.result(TIMEOUT) for f in futs] == [i * 10 for i in range(20)]
    assert first.result(TIMEOUT) == -10
    # each batch's payloads are handed over in submission order
    assert all(batch == sorted(batch) for batch in rec.batches[1:])


def test_token_budget_and_size_cap(make_batcher):
    rec = Recorder()
    budget, cap = 40, 4
    b = make_batcher(rec, max_batch_tokens=budget, max_batch_size=cap)
    hold(rec, b)
    lengths = [3, 17, 5, 9, 2, 11, 8, 1, 20, 6, 4, 13]
    futs = b.submit(items(list(range(len(lengths))), tokens=lengths))
    rec.gate.set()
    wait(futs, TIMEOUT)
    assert all(f.result() == i * 10 for i, f in enumerate(futs))
    for batch in rec.batches[1:]:
        padded = max(lengths[p] for p in batch) * len(batch)
        assert len(batch) <= cap
        assert padded <= budget or len(batch) == 1, (batch, padded)
    assert sorted(p for batch in rec.batches[1:] for p in batch) == list(range(len(lengths)))


def test_similar_lengths_share_batches(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=10_000, max_batch_size=3)
    hold(rec, b)
    # interleaved short (1) and long (100) items
    lengths = [1, 100, 1, 100, 1, 100]
    futs = b.submit(items(list(range(6)), tokens=lengths))
    rec.gate.set()
    wait(futs, TIMEOUT)
    assert sorted(rec.batches[1:]) == [[0, 2, 4], [1, 3, 5]]


def test_oversized_single_item_still_runs(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=10, max_batch_size=4)
    assert b.submit(items([7], tokens=[500]))[0].result(TIMEOUT) == 70


def test_groups_never_share_a_batch(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=1000, max_batch_size=16)
    hold(rec, b)
    a = b.submit(items([1, 2, 3], group="a"))
    c = b.submit(items([101, 102], group="b"))
    d = b.submit(items([4, 5], group="a"))
    rec.gate.set()
    wait(a + c + d, TIMEOUT)
    for batch in rec.batches[1:]:
        assert len({p > 100 for p in batch}) == 1, batch
    assert [f.result() for f in a + c + d] == [10, 20, 30, 1010, 1020, 40, 50]


def test_queue_full_raises_overloaded(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=1000, max_batch_size=16, max_queue_items=3)
    hold(rec, b)
    queued = b.submit(items([1, 2]))
    assert b.queue_depth == 2
    with pytest.raises(OverloadedError) as info:
        b.submit(items([3, 4]))
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    assert b.queue_depth == 2  # the refused request added nothing
    more = b.submit(items([5]))  # still room for one
    rec.gate.set()
    assert [f.result(TIMEOUT) for f in queued + more] == [10, 20, 50]
    assert b.queue_depth == 0


def test_cancelled_futures_are_dropped(make_batcher):
    rec = Recorder()
    b = make_batcher(rec, max_batch_tokens=1000, max_batch_size=16)
    hold(rec, b)
    futs = b.submit(items([1, 2, 3, 4]))
    assert futs[1].cancel() and futs[3].cancel()
    rec.gate.set()
    assert futs[0].result(TIMEOUT) == 10 and futs[2].result(TIMEOUT) == 30
    seen = [p for batch in rec.batches for p in batch]
    assert 2 not in seen and 4 not in seen


def test_failure_fails_only_its_own_item(make_batcher):
    rec = Recorder(fail_on={3})
    b = make_batcher(rec, max_batch_tokens=1000, max_batch_size=16)
    hold(rec, b)
    futs = b.submit(items([1, 2, 3, 4]))
    rec.gate.set()
    assert futs[0].result(TIMEOUT) == 10 and futs[1].result(TIMEOUT) == 20 and futs[3].result(TIMEOUT) == 40
    with pytest.raises(InferenceError) as info:
        futs[2].result(TIMEOUT)
    assert info.value.status == 500 and "RuntimeError" in info.value.message
    # the worker survives and keeps serving
    assert b.submit(items([9]))[0].result(TIMEOUT) == 90


def test_typed_errors_pass_through(make_batcher):
    rec = Recorder(fail_on={2}, raise_typed=True)
    b = make_batcher(rec)
    with pytest.raises(InvalidInputError, match="bad payload 2"):
        b.submit(items([2]))[0].result(TIMEOUT)


def test_wrong_output_count_is_an_error(make_batcher):
    b = make_batcher(lambda payloads: [0])
    futs = b.submit(items([1, 2]))
    # a batch of 2 returning 1 output is retried item by item; each single run is then fine
    assert [f.result(TIMEOUT) for f in futs] == [0, 0]


def test_stop_drains_or_refuses():
    rec = Recorder()
    b = Batcher("drain", rec, max_batch_size=1)
    b.start()
    hold(rec, b)
    queued = b.submit(items([1, 2]))
    threading.Timer(0.2, rec.gate.set).start()
    b.stop(drain=True, timeout=TIMEOUT)
    assert [f.result(0) for f in queued] == [10, 20]
    with pytest.raises(ShuttingDownError):
        b.submit(items([3]))

    rec2 = Recorder()
    b2 = Batcher("nodrain", rec2)
    b2.start()
    hold(rec2, b2)
    pending = b2.submit(items([5]))
    threading.Timer(0.2, rec2.gate.set).start()
    b2.stop(drain=False, timeout=TIMEOUT)
    with pytest.raises(ShuttingDownError):
        pending[0].result(0)


def test_many_threads_submit_concurrently(make_batcher):
    def slow(payloads: list[int]) -> list[int]:
        time.sleep(0.001)
        return [p * 10 for p in payloads]

    b = make_batcher(slow, max_batch_tokens=64, max_batch_size=8)
    results: dict[int, list[int]] = {}

    def client(k: int) -> None:
        payloads = list(range(k * 100, k * 100 + (k % 5) + 1))
        futs = b.submit(items(payloads, tokens=[(p % 7) + 1 for p in payloads]))
        results[k] = [f.result(TIMEOUT) for f in futs]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    for k in range(16):
        assert results[k] == [p * 10 for p in range(k * 100, k * 100 + (k % 5) + 1)]
