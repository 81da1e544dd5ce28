"""Late chunking (research §2.3): one pass over the joined inputs, per-input span mean pooling."""

from __future__ import annotations

import numpy as np
import pytest
from test_v3_model import load
from v3_builders import PREFIXES
from v3_reference import hidden_states, tokenizer

from jinaserve.engine.service import ModelService
from jinaserve.errors import InvalidInputError, TokenLimitExceededError
from jinaserve.jobs import EmbedInput, EmbedOptions

CONTEXT = 128  # the tiny checkpoint's max_position_embeddings (130) - 2
CHUNKS = ["Organic skincare", "for sensitive skin", "with aloe vera and chamomile."]


@pytest.fixture(scope="module")
def service(v3_hf):
    svc = ModelService("v3", load(v3_hf.folder))
    yield svc
    svc.close()


def manual_late_chunking(tiny, task, texts):
    """Spans from cumulative tokenisation (not offsets): input k ends where `prefix + join(texts[:k+1])` ends.
    First span starts at 0 (<s> + instruction), last ends after </s>."""
    tok = tokenizer(str(tiny.folder))
    prefix = PREFIXES.get(task, "") if task else ""
    full = tok(prefix + " ".join(texts))["input_ids"]
    ends = [1 + len(tok(prefix + " ".join(texts[:k + 1]), add_special_tokens=False)["input_ids"])
            for k in range(len(texts))]
    ends[-1] = len(full)
    starts = [0, *ends[:-1]]
    h = hidden_states(tiny, task, full)
    vecs = np.stack([h[s:e].mean(dim=0).numpy() for s, e in zip(starts, ends, strict=True)])
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), len(full)


def late(service, texts, **opts):
    return service.embed_sync([EmbedInput(text=t) for t in texts], EmbedOptions(late_chunking=True, **opts))


@pytest.mark.parametrize("task", ["retrieval.passage", "text-matching", None])
def test_late_chunking_equals_manual_span_pooling(v3_hf, service, task):
    want, n_tokens = manual_late_chunking(v3_hf, task, CHUNKS)
    res = late(service, CHUNKS, task=task)
    assert res.total_tokens == n_tokens
    np.testing.assert_allclose(np.stack(res.vectors), want, atol=2e-5)


def test_late_chunking_differs_from_independent_embeddings(service):
    lc = np.stack(late(service, CHUNKS, task="retrieval.passage").vectors)
    ind = np.stack(service.embed_sync([EmbedInput(text=t) for t in CHUNKS],
                                      EmbedOptions(task="retrieval.passage")).vectors)
    assert lc.shape == ind.shape == (3, 32)
    assert not np.allclose(lc, ind, atol=1e-3)


def test_late_chunking_single_input_equals_normal_embedding(service):
    a = late(service, [CHUNKS[2]], task="classification").vectors[0]
    b = service.embed_sync([EmbedInput(text=CHUNKS[2])], EmbedOptions(task="classification")).vectors[0]
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_late_chunking_matryoshka(service):
    full = late(service, CHUNKS, task="separation", normalized=False).vectors
    cut = late(service, CHUNKS, task="separation", dimensions=5).vectors
    for f, c in zip(full, cut, strict=True):
        np.testing.assert_allclose(c, f[:5] / np.linalg.norm(f[:5]), atol=1e-6)


def long_inputs(tok, prefix: str) -> list[str]:
    """Six inputs of which two (not three) fit one 128-token window after <s>, instruction and </s>."""
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    texts = [f"{sentence} {i}" for i in range(6)]
    n = [len(tok(" " + t, add_special_tokens=False)["input_ids"]) for t in texts]
    budget = CONTEXT - 2 - len(tok(prefix, add_special_tokens=False)["input_ids"])
    assert n[0] + n[1] <= budget < n[0] + n[1] + n[2], (n, budget)
    return texts


def test_over_length_without_truncate_is_400(v3_hf, service):
    texts = long_inputs(tokenizer(str(v3_hf.folder)), PREFIXES["retrieval.passage"])
    with pytest.raises(TokenLimitExceededError, match="joined into one text"):
        late(service, texts, task="retrieval.passage", truncate=False)


def test_over_length_with_truncate_packs_whole_inputs_into_windows(v3_hf, service):
    texts = long_inputs(tokenizer(str(v3_hf.folder)), PREFIXES["retrieval.passage"])
    plan = service.family.plan_embed([EmbedInput(text=t) for t in texts],
                                     EmbedOptions(task="retrieval.passage", late_chunking=True, truncate=True))
    assert len(plan.items) == 3 and all(it.n_tokens <= CONTEXT for it in plan.items)
    res = late(service, texts, task="retrieval.passage", truncate=True)
    assert len(res.vectors) == 6
    for w in range(3):  # each window equals a separate late-chunking request of its two inputs
        pair = late(service, texts[2 * w:2 * w + 2], task="retrieval.passage").vectors
        np.testing.assert_allclose(np.stack(res.vectors[2 * w:2 * w + 2]), np.stack(pair), atol=2e-5)


def test_single_input_longer_than_context_is_cut_like_normal_truncation(service):
    text = " ".join(["Berlin is the capital of Germany; Paris is the capital of France."] * 12)
    a = late(service, [text], task="retrieval.query", truncate=True)
    b = service.embed_sync([EmbedInput(text=text)], EmbedOptions(task="retrieval.query", truncate=True))
    assert a.total_tokens == b.total_tokens == CONTEXT
    np.testing.assert_allclose(a.vectors[0], b.vectors[0], atol=2e-5)


def test_late_chunking_rejects_empty_and_token_inputs(service):
    with pytest.raises(InvalidInputError, match="index 1"):
        late(service, ["a b", "", "c"], task="separation")
    with pytest.raises(InvalidInputError, match="token ids"):
        service.embed_sync([EmbedInput(token_ids=[5, 6])], EmbedOptions(late_chunking=True))


def test_windows_keep_special_tokens_written_inside_an_input(service):
    """A literal "</s>" in an input's text is content of that input, not the template's end token."""
    from jinaserve.models.jina_v3 import late_chunk_windows

    tok = service.family.tokenizer
    texts = ["hello world </s> how are you", "the quick brown fox", "near the river bank"]
    prefix = PREFIXES["retrieval.passage"]
    full = tok(prefix + " ".join(texts))["input_ids"]
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
    windows = late_chunk_windows(tok, texts, prefix, max_tokens=len(full) - 3, truncate=True)
    assert len(windows) == 2
    content = []
    for ids, spans in windows:
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert ids[1:1 + n_prefix] == full[1:1 + n_prefix]  # every window repeats the instruction
        content += ids[1 + n_prefix:-1]
        assert spans[0][0] == 0 and spans[-1][1] == len(ids)
    assert content == full[1 + n_prefix:-1]  # nothing lost, nothing moved to the head or tail
    assert late_chunk_windows(tok, texts, prefix, max_tokens=len(full), truncate=False)[0][0] == full
