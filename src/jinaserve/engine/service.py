"""A loaded model with its batcher: plan → queue → batch → assemble → truncate/normalise.

Both the HTTP layer (async) and the in-process API (sync) go through the same `ModelService`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import numpy as np

from .. import metrics
from ..errors import OverloadedError
from ..jobs import EmbedInput, EmbedOptions, EmbedResult, RerankJob, RerankResult
from ..models.base import EmbedPlan, ModelFamily, RerankPlan
from ..outputs import truncate_and_normalize
from .batcher import Batcher


class ModelService:
    def __init__(self, served_id: str, family: ModelFamily, *, max_batch_tokens: int = 16384,
                 max_batch_size: int = 128, max_queue_items: int = 8192) -> None:
        self.id = served_id
        self.family = family
        self.spec = family.spec
        self.batcher = Batcher(served_id, family.run_batch, max_batch_tokens=max_batch_tokens,
                               max_batch_size=max_batch_size, max_queue_items=max_queue_items,
                               observer=metrics.batch_observer(served_id))
        self.batcher.start()
        self._queue_gauge = metrics.QUEUE_DEPTH.labels(served_id)
        self._queue_gauge.set_function(lambda: self.batcher.queue_depth)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def close(self, drain: bool = True) -> None:
        self.batcher.stop(drain=drain)
        self.family.close()

    # ------------------------------------------------------------------ embeddings
    def _plan_embed(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        self.family.check_embed_options(options)
        return self.family.plan_embed(inputs, options)

    def _finish_embed(self, plan: EmbedPlan, outs: list[Any], options: EmbedOptions) -> EmbedResult:
        raw = plan.assemble(outs)
        vectors: list[np.ndarray] = []
        for v in raw:
            arr = np.asarray(v, dtype=np.float32)
            if arr.ndim == 2:  # multi-vector: each token vector unit length, no Matryoshka cut
                vectors.append(truncate_and_normalize(arr, None, True))
            else:
                vectors.append(truncate_and_normalize(arr, options.dimensions, options.normalized))
        metrics.INPUT_TOKENS.labels(self.id).inc(plan.total_tokens)
        metrics.INPUTS.labels(self.id).inc(len(vectors))
        return EmbedResult(vectors, plan.total_tokens)

    def _submit(self, plan: EmbedPlan | RerankPlan) -> list[Future]:
        try:
            return self.batcher.submit(plan.items)
        except OverloadedError:
            metrics.REJECTED.labels(self.id).inc()
            raise

    async def embed(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedResult:
        plan = await asyncio.to_thread(self._plan_embed, inputs, options)
        outs = await _gather(self._submit(plan))
        return self._finish_embed(plan, outs, options)

    def embed_sync(self, inputs: list[EmbedInput], options: EmbedOptions) -> EmbedResult:
        plan = self._plan_embed(inputs, options)
        outs = [f.result() for f in self._submit(plan)]
        return self._finish_embed(plan, outs, options)

    # ------------------------------------------------------------------ rerank
    def _finish_rerank(self, plan: RerankPlan, outs: list[Any], n_docs: int) -> RerankResult:
        result = plan.assemble(outs)
        metrics.INPUT_TOKENS.labels(self.id).inc(result.total_tokens)
        metrics.INPUTS.labels(self.id).inc(n_docs)
        return result

    async def rerank(self, job: RerankJob) -> RerankResult:
        plan = await asyncio.to_thread(self.family.plan_rerank, job)
        outs = await _gather(self._submit(plan))
        return self._finish_rerank(plan, outs, len(job.documents))

    def rerank_sync(self, job: RerankJob) -> RerankResult:
        plan = self.family.plan_rerank(job)
        outs = [f.result() for f in self._submit(plan)]
        return self._finish_rerank(plan, outs, len(job.documents))


async def _gather(futures: list[Future]) -> list[Any]:
    """Await batcher futures; if the caller is cancelled, queued items are cancelled too."""
    wrapped = [asyncio.wrap_future(f) for f in futures]
    try:
        return list(await asyncio.gather(*wrapped))
    except BaseException:
        for f in futures:
            f.cancel()
        raise
