"""A loaded model with its batcher: plan → queue → batch → assemble → truncate/normalise.

Both the HTTP layer (async) and the in-process API (sync) go through the same `ModelService`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np

from .. import metrics
from ..errors import InvalidInputError, OverloadedError
from ..image_fetch import is_url
from ..images import prefetch_urls
from ..jobs import EmbedInput, EmbedOptions, EmbedResult, RerankJob, RerankResult
from ..models.base import EmbedPlan, ModelFamily, RerankPlan
from ..outputs import truncate_and_normalize
from .admission import Admission
from .batcher import Batcher
from .cache import CacheSplit, EmbeddingCache
from .planner import Planner

# Requests whose whole input is at most this many characters of text (or token ids) are planned on the
# event loop: tokenising ~100 characters takes ~40 µs, less than the hand-off to a worker thread and back
# (two thread wake-ups: ~0.1 ms on an idle machine, several ms on a loaded one — `benchmarks/overhead.py`).
# Anything larger, and any image, is tokenised / planned in a worker thread, off the event loop.
INLINE_PLAN_MAX_CHARS = 256


def _small_text_request(inputs: list[EmbedInput]) -> bool:
    total = 0
    for x in inputs:
        if x.image is not None:
            return False
        total += len(x.text) if x.text is not None else len(x.token_ids or ())
        if total > INLINE_PLAN_MAX_CHARS:
            return False
    return True


class ModelService:
    cache: EmbeddingCache | None = None  # exact-match embedding cache (engine/cache.py), None = off

    def __init__(self, served_id: str, family: ModelFamily, *, max_batch_tokens: int = 16384,
                 max_batch_size: int = 128, max_queue_items: int = 8192, max_queue_tokens: int | None = None,
                 max_queue_wait_s: float | None = None, max_queue_image_bytes: int | None = None,
                 cache: EmbeddingCache | None = None) -> None:
        self.id = served_id
        self.cache = cache
        self.family = family
        self.spec = family.spec
        # --- admission (engine/admission.py) and this model's planning threads (engine/planner.py)
        self.admission = Admission(served_id, max_wait_s=max_queue_wait_s, max_queue_items=max_queue_items,
                                   max_queue_tokens=max_queue_tokens, max_queue_bytes=max_queue_image_bytes)
        self._planner = Planner(served_id)
        batch_metrics = metrics.batch_observer(served_id)

        def observe(size: int, tokens: int, seconds: float) -> None:
            batch_metrics(size, tokens, seconds)
            self.admission.observe(size, tokens, seconds)
        # ---
        self.batcher = Batcher(served_id, family.run_batch, max_batch_tokens=max_batch_tokens,
                               max_batch_size=max_batch_size, max_queue_items=max_queue_items,
                               observer=observe)
        self.batcher.start()
        self._queue_gauge = metrics.QUEUE_DEPTH.labels(served_id)
        self._queue_gauge.set_function(lambda: self.batcher.queue_depth)
        metrics.ESTIMATED_WAIT.labels(served_id).set_function(self.admission.estimated_wait_s)
        # Label children resolved once (a labels() look-up takes a lock on every call).
        self._tokens_counter = metrics.INPUT_TOKENS.labels(served_id)
        self._inputs_counter = metrics.INPUTS.labels(served_id)
        self._rejected_counter = metrics.REJECTED.labels(served_id)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def close(self, drain: bool = True) -> None:
        self.batcher.stop(drain=drain)
        self._planner.close()
        self.family.close()

    # ------------------------------------------------------------------ embeddings
    def _plan_embed(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        _check_unicode((x.text for x in inputs), "Input")
        self.family.check_embed_options(options)
        return self.family.plan_embed(inputs, options)

    def _finish_embed(self, plan: EmbedPlan | None, outs: list[Any], options: EmbedOptions,
                      split: CacheSplit | None = None) -> EmbedResult:
        raw = [np.asarray(v, dtype=np.float32) for v in plan.assemble(outs)] if plan is not None else []
        total_tokens = plan.total_tokens if plan is not None else 0
        # --- embedding cache: remember what was computed, put the hits back in request order
        if split is not None:
            if plan is not None and self.cache is not None and len(plan.items) == len(split.missing):
                self.cache.store(split, raw, [it.n_tokens for it in plan.items])
            raw, total_tokens = split.merge(raw, total_tokens)
        # ---
        vectors: list[np.ndarray]
        if raw and all(a.ndim == 1 and a.shape == raw[0].shape for a in raw):
            # Usual case: one single vector per input, all the same width: one vectorised pass.
            vectors = list(truncate_and_normalize(np.stack(raw), options.dimensions, options.normalized))
        else:
            vectors = []
            for arr in raw:
                if arr.ndim == 2:  # multi-vector: each token vector unit length, no Matryoshka cut
                    vectors.append(truncate_and_normalize(arr, None, True))
                else:
                    vectors.append(truncate_and_normalize(arr, options.dimensions, options.normalized))
        self._tokens_counter.inc(total_tokens)
        self._inputs_counter.inc(len(vectors))
        tokenized = plan.tokenized if plan is not None and options.return_tokenized_input else None
        return EmbedResult(vectors, total_tokens, tokenized)

    def _cache_split(self, inputs: list[EmbedInput], options: EmbedOptions) -> CacheSplit | None:
        if self.cache is None:
            return None
        _check_unicode((x.text for x in inputs), "Input")
        self.family.check_embed_options(options)  # an invalid request fails before any look-up
        return self.cache.split(inputs, options)

    def _submit(self, plan: EmbedPlan | RerankPlan, *, timed: bool = True) -> list[Future]:
        """Admission (413 / 429, engine/admission.py), then the batcher's queue."""
        items = plan.items
        try:
            reserved = self.admission.admit(items, timed=timed)
            try:
                futures = self.batcher.submit(items)
            except BaseException:
                self.admission.release(*reserved)
                raise
        except OverloadedError:
            self._rejected_counter.inc()
            raise
        self.admission.track(items, futures)
        return futures

    def _precheck(self) -> None:
        try:
            self.admission.precheck()
        except OverloadedError:
            self._rejected_counter.inc()
            raise

    def _image_policy(self) -> Any:
        """The family's image policy: only families that take images have one."""
        return getattr(self.family, "image_policy", None)

    async def _fetch_images(self, items: list[Any], where: list[int]) -> list[Any]:
        """`items` (EmbedInputs or RerankDocuments) with the image URLs at `where` replaced by their bytes,
        downloaded here (async, jinaserve.image_fetch) so no planning thread waits on them. New objects: the
        caller's keep their URLs (rerank echoes them back)."""
        policy = self._image_policy()
        if not where or policy is None:
            return items
        data = await prefetch_urls([items[i].image for i in where], policy, where)
        out = list(items)
        for i, d in zip(where, data, strict=True):
            out[i] = replace(items[i], image=d)
        return out

    async def embed(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedResult:
        split = self._cache_split(inputs, options)  # cache hits skip planning and the queue
        if split is not None:
            if not split.missing:
                return self._finish_embed(None, [], options, split)
            inputs = split.missing_inputs
        self._precheck()
        inputs = await self._fetch_images(inputs, [i for i, x in enumerate(inputs) if is_url(x.image)])
        if _small_text_request(inputs):
            plan = self._plan_embed(inputs, options)
        else:
            plan = await self._planner.run(self._plan_embed, inputs, options)
        outs = await _gather(self._submit(plan))
        return self._finish_embed(plan, outs, options, split)

    def embed_sync(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedResult:
        split = self._cache_split(inputs, options)
        if split is not None:
            if not split.missing:
                return self._finish_embed(None, [], options, split)
            inputs = split.missing_inputs
        plan = self._plan_embed(inputs, options)
        outs = [f.result() for f in self._submit(plan, timed=False)]
        return self._finish_embed(plan, outs, options, split)

    # ------------------------------------------------------------------ rerank
    def _finish_rerank(self, plan: RerankPlan, outs: list[Any], n_docs: int) -> RerankResult:
        result = plan.assemble(outs)
        self._tokens_counter.inc(result.total_tokens)
        self._inputs_counter.inc(n_docs)
        return result

    def _plan_rerank(self, job: RerankJob) -> RerankPlan:
        _check_unicode([job.query if isinstance(job.query, str) else None], "Query")
        _check_unicode((d.text for d in job.documents), "Document")
        return self.family.plan_rerank(job)

    async def rerank(self, job: RerankJob) -> RerankResult:
        self._precheck()
        docs = await self._fetch_images(job.documents, [i for i, d in enumerate(job.documents)
                                                        if d.text is None and is_url(d.image)])
        fetched = job if docs is job.documents else replace(job, documents=docs)
        plan = await self._planner.run(self._plan_rerank, fetched)
        outs = await _gather(self._submit(plan))
        return self._finish_rerank(plan, outs, len(job.documents))

    def rerank_sync(self, job: RerankJob) -> RerankResult:
        plan = self._plan_rerank(job)
        outs = [f.result() for f in self._submit(plan, timed=False)]
        return self._finish_rerank(plan, outs, len(job.documents))

    # ------------------------------------------------------------------ background (batch jobs)
    # Batch jobs plan here and queue on the batcher's background lane: online items always go first,
    # and the online queue limit (429s) does not apply. Planning errors raise here; the returned
    # `Pending` raises a run's error from `result()`.
    def start_embed(self, inputs: list[EmbedInput], options: EmbedOptions) -> Pending:
        plan = self._plan_embed(inputs, options)
        return Pending(self.batcher.submit(plan.items, background=True),
                       lambda outs: self._finish_embed(plan, outs, options))

    def start_rerank(self, job: RerankJob) -> Pending:
        plan = self._plan_rerank(job)
        return Pending(self.batcher.submit(plan.items, background=True),
                       lambda outs: self._finish_rerank(plan, outs, len(job.documents)))


class Pending:
    """A background request in flight: its batcher futures and how to assemble their outputs."""

    def __init__(self, futures: list[Future], finish: Callable[[list[Any]], Any]) -> None:
        self.futures = futures
        self._finish = finish

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self, timeout: float | None = None) -> Any:
        return self._finish([f.result(timeout) for f in self.futures])

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()


async def _gather(futures: list[Future]) -> list[Any]:
    """Await batcher futures; if the caller is cancelled, queued items are cancelled too.

    One event-loop wake-up per request (when its last item is done, or as soon as one fails), instead of
    one `call_soon_threadsafe` per item as `asyncio.wrap_future` + `gather` would do.
    """
    if not futures:
        return []
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    remaining = len(futures)
    lock = threading.Lock()
    woken = False

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def on_done(f: Future) -> None:  # runs in the batcher's worker thread (or here, if already done)
        nonlocal remaining, woken
        failed = not f.cancelled() and f.exception() is not None
        with lock:
            remaining -= 1
            if woken or not (remaining == 0 or failed):
                return
            woken = True
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            pass

    for f in futures:
        f.add_done_callback(on_done)
    try:
        await waiter
        if all(f.done() for f in futures):
            return [f.result() for f in futures]  # raises the first failed item's error, in request order
        return _first_error(futures)  # woken early by a failed item
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _first_error(futures: list[Future]) -> list[Any]:
    for f in futures:
        if f.done() and not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
    raise RuntimeError("batcher futures woke the request before finishing")


def _check_unicode(texts: Iterable[str | None], what: str) -> None:
    """Refuse text that cannot be encoded (a lone surrogate such as a JSON "\\ud800" escape): a clear
    400 here instead of a tokenizer TypeError (500) in whichever family gets it."""
    for i, text in enumerate(texts):
        if text and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = f"{what} at index {i}" if what != "Query" else what
                raise InvalidInputError(f"{where} is not valid Unicode: unpaired surrogate "
                                        f"{text[exc.start]!r} at character {exc.start}") from None
