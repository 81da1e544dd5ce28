"""Exact-match embedding cache (`--cache-size`): hits return the very vectors the model computed, skip the
queue, count usage as computed, respect per-request options, survive a restart with `--cache-persist`, and
never serve what depends on other inputs (late chunking)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from helpers import server_in_thread
from jinaserve.engine.cache import EmbeddingCache, cache_key
from jinaserve.jobs import EmbedInput, EmbedOptions


def _counter(text: str, name: str, model: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_keys_separate_model_task_truncate_and_text():
    base = cache_key("m", "hello", EmbedOptions(task="a"))
    assert base == cache_key("m", "hello", EmbedOptions(task="a", dimensions=8, normalized=False))
    for other in (cache_key("n", "hello", EmbedOptions(task="a")), cache_key("m", "hello", EmbedOptions(task="b")),
                  cache_key("m", "hello", EmbedOptions(task="a", truncate=True)),
                  cache_key("m", "hello ", EmbedOptions(task="a"))):
        assert other != base


def test_lru_bound_and_uncacheable_inputs():
    cache = EmbeddingCache("lru-test", 2)
    opts = EmbedOptions()
    split = cache.split([EmbedInput(text=t) for t in "abc"], opts)
    assert split is not None and split.missing == [0, 1, 2]
    cache.store(split, [np.full(3, i, np.float32) for i in range(3)], [1, 2, 3])
    assert len(cache) == 2  # "a" evicted
    again = cache.split([EmbedInput(text="a"), EmbedInput(text="c"), EmbedInput(token_ids=[1, 2])], opts)
    assert again is not None and sorted(again.hits) == [1] and again.missing == [0, 2]
    assert cache.split([EmbedInput(text="c")], EmbedOptions(late_chunking=True)) is None
    assert cache.split([EmbedInput(token_ids=[5])], opts) is None


def _embed(c: httpx.Client, texts, **extra) -> tuple[np.ndarray, dict]:
    r = c.post("/v1/embeddings", json={"model": "mini", "input": texts, "embedding_type": "base64", **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    vecs = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    return vecs, body["usage"]


def test_http_hits_are_the_computed_vectors_and_skip_the_model(tiny_bert_path, tmp_path):
    texts = ["first text", "second one", "a third, longer text than the others"]
    with server_in_thread(models=[f"mini={tiny_bert_path}"], cache_size=100, data_dir=str(tmp_path)) as srv, \
            srv.client() as c:
        service = srv.app.state.registry.services["mini"]
        cold, usage_cold = _embed(c, texts)
        calls: list[int] = []
        real = service.batcher.submit
        service.batcher.submit = lambda items: calls.append(len(items)) or real(items)
        warm, usage_warm = _embed(c, texts)
        np.testing.assert_array_equal(warm, cold)  # bit for bit: the stored vectors
        assert usage_warm == usage_cold  # usage counts the tokens as computed
        assert calls == []  # no item reached the batcher
        # per-request options apply to hits: a Matryoshka cut is the cut of the cached vector, renormalised
        cut, _ = _embed(c, texts, dimensions=8)
        ref = cold[:, :8] / np.linalg.norm(cold[:, :8], axis=1, keepdims=True)
        np.testing.assert_allclose(cut, ref, atol=1e-6)
        # a mix: one new text is computed, the others come from the cache, order kept
        mixed, _ = _embed(c, [texts[2], "brand new", texts[0]])
        np.testing.assert_array_equal(mixed[[0, 2]], cold[[2, 0]])
        assert calls == [1]  # only the new text was queued
        metrics = c.get("/metrics").text
        assert _counter(metrics, "jinaserve_cache_hits_total", "mini") >= 3 + 3 + 2
        assert _counter(metrics, "jinaserve_cache_misses_total", "mini") >= 3 + 1


def test_persisted_cache_survives_a_restart(tiny_bert_path, tmp_path):
    settings = {"models": [f"mini={tiny_bert_path}"], "cache_size": 10, "cache_persist": True,
                "data_dir": str(tmp_path)}
    with server_in_thread(**settings) as srv, srv.client() as c:
        first, _ = _embed(c, ["kept across restarts"])
    with server_in_thread(**settings) as srv, srv.client() as c:
        before = _counter(c.get("/metrics").text, "jinaserve_cache_hits_total", "mini")
        second, _ = _embed(c, ["kept across restarts"])
        after = _counter(c.get("/metrics").text, "jinaserve_cache_hits_total", "mini")
    np.testing.assert_array_equal(first, second)
    assert after - before == 1


@pytest.mark.parametrize("bad", [{"cache_size": -1}])
def test_negative_cache_size_is_a_configuration_error(bad):
    from pydantic import ValidationError

    from jinaserve.config import Settings

    with pytest.raises(ValidationError):
        Settings(**bad)
