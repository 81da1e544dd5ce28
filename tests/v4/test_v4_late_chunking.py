"""late_chunking on jina-embeddings-v4 (text only, research §2.1/§2.3): one pass over the joined inputs with
the task prefix in front, per-input span mean pooling; checked against the hand-merged reference model."""

from __future__ import annotations

import numpy as np
import pytest
from test_v4_family import Reference, _unit
from tiny_v4 import PNG

from jinaserve.errors import TokenLimitExceededError, ValidationFailedError
from jinaserve.jobs import EmbedInput, EmbedOptions

CHUNKS = ["a cat sits on a mat.", "the quick brown fox", "jumps over the lazy dog"]
ATOL = 2e-5


@pytest.fixture(scope="module")
def ref(tiny_v4_path):
    return Reference(tiny_v4_path, "retrieval")


def manual_late_chunking(ref: Reference, prefix: str, texts: list[str]) -> tuple[np.ndarray, int]:
    """Spans from cumulative tokenisation: input k ends where `prefix + join(texts[:k+1])` ends; the first
    span starts at 0 (prefix tokens included). Byte-level BPE never merges across the joining space."""
    full = ref.tok(prefix + " ".join(texts), add_special_tokens=False)["input_ids"]
    ends = [len(ref.tok(prefix + " ".join(texts[:k + 1]), add_special_tokens=False)["input_ids"])
            for k in range(len(texts))]
    assert ends[-1] == len(full)
    starts = [0, *ends[:-1]]
    h = ref.hidden(full)
    vecs = np.stack([h[s:e].mean(dim=0).numpy() for s, e in zip(starts, ends, strict=True)])
    return _unit(vecs), len(full)


def test_late_chunking_equals_manual_span_pooling(v4_embedder, ref):
    service = v4_embedder._service
    want, n_tokens = manual_late_chunking(ref, "Passage: ", CHUNKS)
    res = service.embed_sync([EmbedInput(text=t) for t in CHUNKS],
                             EmbedOptions(task="retrieval.passage", late_chunking=True))
    assert res.total_tokens == n_tokens
    np.testing.assert_allclose(np.stack(res.vectors), want, atol=ATOL)
    independent = v4_embedder.encode_text(CHUNKS, task="retrieval.passage")
    assert not np.allclose(np.stack(res.vectors), independent, atol=1e-3)  # context crossed the inputs
    # one input: the same as a normal embedding; Matryoshka after pooling
    one = v4_embedder.encode_text([CHUNKS[0]], task="retrieval.passage", late_chunking=True)
    np.testing.assert_allclose(one, independent[:1], atol=ATOL)
    full = v4_embedder.encode_text(CHUNKS, task="code.query", late_chunking=True, normalized=False)
    cut = v4_embedder.encode_text(CHUNKS, task="code.query", late_chunking=True, dimensions=8)
    np.testing.assert_allclose(cut, _unit(full[:, :8]), atol=1e-5)


def test_late_chunking_refuses_images_multivector_and_over_length(v4_embedder):
    service = v4_embedder._service
    with pytest.raises(ValidationFailedError, match="text inputs only"):
        service.embed_sync([EmbedInput(text="a"), EmbedInput(image=PNG)],
                           EmbedOptions(late_chunking=True, in_process=True))
    with pytest.raises(ValidationFailedError, match="return_multivector"):
        service.embed_sync([EmbedInput(text="a")], EmbedOptions(late_chunking=True, return_multivector=True))
    family = service.family
    old = family.max_tokens
    family.max_tokens = 16  # a small context, so the over-length paths stay cheap
    try:
        texts = ["the quick brown fox jumps", "over the lazy dog", "a cat sits on a mat"]
        with pytest.raises(TokenLimitExceededError, match="joined into one text"):
            service.embed_sync([EmbedInput(text=t) for t in texts], EmbedOptions(late_chunking=True))
        plan = family.plan_embed([EmbedInput(text=t) for t in texts], EmbedOptions(late_chunking=True,
                                                                                    truncate=True))
        assert len(plan.items) > 1 and all(it.n_tokens <= 16 for it in plan.items)
        res = service.embed_sync([EmbedInput(text=t) for t in texts], EmbedOptions(late_chunking=True,
                                                                                   truncate=True))
        assert len(res.vectors) == 3
        np.testing.assert_allclose(np.linalg.norm(np.stack(res.vectors), axis=1), 1, atol=1e-5)
    finally:
        family.max_tokens = old
