"""The batcher's background lane and the store's exactly-once commit, as units: online items always run
before queued background items; background batches shrink to about half an online batch while online traffic
is recent and use the full budget when it is idle; background work bypasses the online queue limit (no 429);
a commit records the cursor and the output lengths together, and reopening cuts what was written after it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import wait
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jinaserve.batch.sinks import JsonlSink
from jinaserve.engine import batcher as batcher_mod
from jinaserve.engine.batcher import Batcher
from jinaserve.errors import OverloadedError
from jinaserve.models.base import WorkItem
from jinaserve.store.jobs import PROCESSING, Job, Progress, open_job_store


class Gate:
    """run_batch that records each batch (payloads) and waits on a gate before the first one."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, payloads: list[str]) -> list[str]:
        self.entered.set()
        assert self.gate.wait(10)
        self.batches.append(list(payloads))
        return payloads


def _items(prefix: str, n: int, tokens: int = 10) -> list[WorkItem]:
    return [WorkItem(f"{prefix}{i}", tokens, None) for i in range(n)]


def test_online_first_and_small_background_batches_while_online_is_recent():
    run = Gate()
    b = Batcher("lane", run, max_batch_tokens=400, max_batch_size=40, max_queue_items=4)
    b.start()
    try:
        b.submit(_items("warm", 1))  # occupies the worker until the gate opens
        assert run.entered.wait(10)
        bg = b.submit(_items("bg", 100), background=True)  # over max_queue_items: no 429 for background work
        online = b.submit(_items("on", 4))
        with pytest.raises(OverloadedError):
            b.submit(_items("x", 5))  # the online lane still has its limit
        run.gate.set()
        wait(bg + online, timeout=10)
        order = [p for batch in run.batches for p in batch]
        assert order.index("on0") < order.index("bg0")  # queued online items go before queued background ones
        assert all(len(batch) <= 2 for batch in run.batches if batch[0].startswith("bg"))  # half of ~4 items
    finally:
        b.stop()


def test_background_uses_the_full_budget_when_online_is_idle(monkeypatch):
    monkeypatch.setattr(batcher_mod, "ONLINE_RECENT_S", 0.0)
    run = Gate()
    run.gate.set()
    b = Batcher("lane-idle", run, max_batch_tokens=400, max_batch_size=40)
    b.start()
    try:
        time.sleep(0.01)
        futures = b.submit(_items("bg", 120), background=True)
        wait(futures, timeout=10)
        assert max(len(batch) for batch in run.batches) == 40  # 400 tokens / 10 per item, size cap 40
    finally:
        b.stop()


def test_stop_cancels_queued_background_work():
    run = Gate()
    b = Batcher("lane-stop", run)
    b.start()
    b.submit(_items("warm", 1))
    assert run.entered.wait(10)
    bg = b.submit(_items("bg", 5), background=True)
    run.gate.set()
    b.stop()
    assert all(f.cancelled() or f.done() for f in bg)


def test_commit_records_cursor_and_lengths_together_and_reopen_cuts_the_tail(tmp_path: Path):
    store = open_job_store(tmp_path)
    job = store.create_job(Job(id="batch_t", api="openai", endpoint="/v1/embeddings", status=PROCESSING,
                               created_at=time.time(), total=3))
    paths = {"out": tmp_path / "out.jsonl", "err": tmp_path / "err.jsonl"}
    sink = JsonlSink(paths, {})
    sink.write([("out", {"line": 0}), ("err", {"line": 1})])
    assert store.commit_progress(job.id, Progress(2, 100, sink.flush(), completed=1, failed=1, tokens=7))
    sink.write([("out", {"line": 2})])  # written, then the process dies before its commit
    sink.flush()
    sink.close()
    after_crash = store.get_job(job.id)
    assert (after_crash.next_line, after_crash.input_offset, after_crash.completed, after_crash.failed,
            after_crash.total_tokens) == (2, 100, 1, 1, 7)
    JsonlSink(paths, after_crash.sink_state).close()  # a resumed run reopens at the committed lengths
    assert paths["out"].read_text() == '{"line":0}\n' and paths["err"].read_text() == '{"line":1}\n'
    store.request_cancel(job.id)
    assert not store.commit_progress(job.id, Progress(3, 150, {}, completed=1))  # cancelled: nothing recorded
    assert store.get_job(job.id).next_line == 2


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(st.just(""), st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                                                            blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                                                     max_size=20)), max_size=30),
       cut=st.integers(min_value=0, max_value=40))
def test_reading_resumes_at_any_committed_offset(tmp_path_factory, lines: list[str], cut: int) -> None:
    """Resuming from a committed (line, byte offset) reads exactly the rest: no line twice, none lost."""
    from jinaserve.batch.readers import iter_lines

    path = tmp_path_factory.mktemp("r") / "in.txt"
    path.write_bytes("".join(x + "\n" for x in lines).encode())
    full = list(iter_lines(path))
    assert [raw.decode().rstrip("\n") for _, raw, _ in full] == [x for x in lines if x.encode().strip()]
    k = min(cut, len(full))
    line_no, offset = (full[k - 1][0] + 1, full[k - 1][2]) if k else (0, 0)
    assert list(iter_lines(path, offset, line_no)) == full[k:]
