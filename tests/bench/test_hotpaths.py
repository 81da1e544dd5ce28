"""Behaviour of the performance changes on hot paths (issue 7): same results as the plain versions."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from jinaserve.engine.service import _gather
from jinaserve.outputs import truncate_and_normalize
from jinaserve.runtimes.torch_runtime import pad_batch


def _reference_pad(seqs, pad_id, side):
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        if side == "left":
            ids[i, longest - len(s):] = torch.tensor(s)
            mask[i, longest - len(s):] = 1
        else:
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
    return ids, mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_batch_matches_reference(side):
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 30000, size=n)) for n in (5, 1, 0, 17, 17, 3)]
    seqs = [[int(x) for x in s] for s in seqs]
    ids, mask = pad_batch(seqs, 7, side=side)
    ref_ids, ref_mask = _reference_pad(seqs, 7, side)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)


def _complete_later(futures, values, delay=0.01, fail_at=None):
    def work():
        for i, (f, v) in enumerate(zip(futures, values, strict=True)):
            time.sleep(delay)
            if not f.set_running_or_notify_cancel():
                continue
            if i == fail_at:
                f.set_exception(ValueError(f"item {i} failed"))
            else:
                f.set_result(v)
    t = threading.Thread(target=work)
    t.start()
    return t


def test_gather_returns_results_in_order():
    async def main():
        futures = [Future() for _ in range(5)]
        t = _complete_later(list(reversed(futures)), [4, 3, 2, 1, 0])
        out = await _gather(futures)
        t.join()
        return out
    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_gather_fails_fast_and_cancels_the_rest():
    async def main():
        futures = [Future() for _ in range(6)]
        t = _complete_later(futures, list(range(6)), delay=0.1, fail_at=1)
        started = time.perf_counter()
        with pytest.raises(ValueError, match="item 1 failed"):
            await _gather(futures)
        waited = time.perf_counter() - started
        t.join()
        return futures, waited
    futures, waited = asyncio.run(main())
    assert waited < 0.5  # woke at the failure (~0.2 s), not after all six items (≥ 0.6 s)
    assert futures[0].result() == 0
    assert all(f.cancelled() for f in futures[3:])  # still queued when the request failed


def test_gather_cancellation_cancels_queued_items():
    async def main():
        futures = [Future() for _ in range(3)]
        task = asyncio.ensure_future(_gather(futures))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return futures
    assert all(f.cancelled() for f in asyncio.run(main()))


def test_gather_of_already_done_futures():
    async def main():
        futures = [Future() for _ in range(3)]
        for i, f in enumerate(futures):
            f.set_result(i)
        return await _gather(futures) + await _gather([])
    assert asyncio.run(main()) == [0, 1, 2]


def test_vectorised_finish_equals_per_vector(tmp_path):
    from jinaserve.engine.service import ModelService
    from jinaserve.jobs import EmbedOptions
    from jinaserve.models.base import EmbedPlan

    rng = np.random.default_rng(1)
    raw = [rng.normal(size=64).astype(np.float32) for _ in range(9)]
    plan = EmbedPlan([], 10, lambda outs: list(outs))
    svc = ModelService.__new__(ModelService)  # only the post-processing is exercised
    svc.id = "m"
    from jinaserve import metrics
    svc._tokens_counter = metrics.INPUT_TOKENS.labels("bench-test")
    svc._inputs_counter = metrics.INPUTS.labels("bench-test")
    for dims, norm in ((None, True), (16, True), (16, False)):
        res = svc._finish_embed(plan, raw, EmbedOptions(dimensions=dims, normalized=norm))
        for got, v in zip(res.vectors, raw, strict=True):
            np.testing.assert_allclose(got, truncate_and_normalize(v, dims, norm), rtol=1e-6, atol=1e-7)
            assert got.dtype == np.float32 and got.shape == ((dims or 64),)
    mixed = [raw[0], rng.normal(size=(3, 64)).astype(np.float32)]  # single + multi-vector
    res = svc._finish_embed(plan, mixed, EmbedOptions(dimensions=16))
    assert res.vectors[0].shape == (16,) and res.vectors[1].shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(res.vectors[1], axis=1), 1, atol=1e-5)


def test_small_text_requests_are_planned_inline_and_the_rest_off_the_loop():
    from jinaserve.engine.service import INLINE_PLAN_MAX_CHARS, ModelService, _small_text_request
    from jinaserve.jobs import EmbedInput, EmbedOptions

    limit = INLINE_PLAN_MAX_CHARS
    assert _small_text_request([EmbedInput(text="a" * limit)])
    assert not _small_text_request([EmbedInput(text="a" * (limit // 2 + 1))] * 2)  # the total counts
    assert _small_text_request([EmbedInput(token_ids=[1] * limit)])
    assert not _small_text_request([EmbedInput(image="https://example.com/x.png")])  # images: never inline

    from jinaserve.engine.admission import Admission
    from jinaserve.engine.planner import Planner

    planned_on: list[int] = []
    svc = ModelService.__new__(ModelService)
    svc.admission, svc._planner, svc.family = Admission("m"), Planner("m"), object()  # no limits, no image policy

    def plan(inputs, options):
        planned_on.append(threading.get_ident())
        return "plan"

    def submit(plan):
        f: Future = Future()
        f.set_result(1)
        return [f]

    svc._plan_embed = plan
    svc._submit = submit
    svc._finish_embed = lambda plan, outs, options, *cache_split: outs

    async def main():
        loop_thread = threading.get_ident()
        small = await svc.embed([EmbedInput(text="short text")], EmbedOptions())
        big = await svc.embed([EmbedInput(text="word " * 200)], EmbedOptions())
        image = await svc.embed([EmbedInput(image="https://example.com/x.png")], EmbedOptions())
        return loop_thread, small, big, image

    loop_thread, *outs = asyncio.run(main())
    assert outs == [[1], [1], [1]]
    assert planned_on[0] == loop_thread  # ~40 µs of tokenisation: cheaper than two thread hand-offs
    assert planned_on[1] != loop_thread and planned_on[2] != loop_thread  # real work: a worker thread
