"""Issue 11 item 5: back-pressure by time, and an honest 413 for what can never fit.

* A request with more inputs than the queue holds (`max_queue_items`) or more tokens (`max_queue_tokens`)
  gets a 413 naming the limit, never a 429 (retrying it could never help).
* 24 clients sending long texts (150-400 words, the load of `benchmarks/backpressure.py`) to the real
  MiniLM with `max_queue_wait_s=1`: the server answers 429 with a `Retry-After` from its estimate instead of
  letting waits grow, so admitted requests finish within a few seconds, no client times out, and the
  rejected ones come back at once. Before the fix the queue counted
  items only, so it never filled: no 429 at all, and waits grew with the load.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
from benchmarks.backpressure import long_texts, overload
from ops_figures import cpu_line, median, record

from helpers import server_in_thread


def test_requests_that_can_never_fit_get_413(tiny_bert_path):
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], max_queue_items=32, max_queue_tokens=2000) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": ["hello world"] * 33})
        assert r.status_code == 413, r.text
        assert "max_queue_items=32" in r.json()["detail"] and "retry-after" not in r.headers
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": long_texts(random.Random(0), 16),
                                                         "truncate": True})
        assert r.status_code == 413, r.text
        assert "max_queue_tokens=2000" in r.json()["detail"]
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": ["hello world"] * 32})
        assert r.status_code == 200, r.text


def test_time_based_admission_answers_429_instead_of_growing_waits(minilm_path):
    max_wait, clients, seconds, texts = 1.0, 24, 8.0, 4
    with server_in_thread(models=[f"all-MiniLM-L6-v2={minilm_path}"], max_queue_wait_s=max_wait) as srv:
        # one request alone first: how long its own work takes on this machine now
        body = {"model": "all-MiniLM-L6-v2", "input": long_texts(random.Random(99), texts), "truncate": True}
        t0 = time.perf_counter()
        assert httpx.post(srv.url + "/v1/embeddings", json=body, timeout=60).status_code == 200
        alone = time.perf_counter() - t0
        out = asyncio.run(overload(srv.url, model="all-MiniLM-L6-v2", clients=clients, texts=texts, seconds=seconds,
                                   timeout=30, max_retry_sleep=0.2))
        admission = getattr(srv.app.state.registry.services["all-MiniLM-L6-v2"], "admission", None)
        rate = admission.tokens_per_second if admission else None
    ok, rejected = out["ok"], out["rejected"]
    record("backpressure_time", cpu=cpu_line(), clients=clients, max_queue_wait_s=max_wait, alone_s=round(alone, 2),
           served_200=len(ok),
           rejected_429=len(rejected), client_timeouts=out["timeouts"], tokens_per_s=round(rate or 0),
           ok_p50_s=round(median(ok), 2) if ok else None, ok_max_s=round(max(ok), 2) if ok else None,
           rejected_p50_ms=round(median(rejected) * 1000, 1) if rejected else None,
           retry_after_range=[min(out["retry_after"]), max(out["retry_after"])] if rejected else None)
    assert not out["other"] and not out["errors"], (out["other"][:3], out["errors"][:3])
    assert out["timeouts"] == 0
    assert ok, "nothing was served"
    assert rejected, "no 429: the queue was allowed to grow"
    assert all("max_queue_wait_s" in d for d in out["rejected_details"]), out["rejected_details"]
    assert all(1 <= ra <= 120 for ra in out["retry_after"])
    # admitted requests were answered within about max_wait, or their own work when alone (the estimate is from
    # measured throughput on a noisy shared machine: generous bound). Without admission, 24 clients queue
    # behind each other: ~24x the time of one request alone.
    assert max(ok) < max_wait + 3 * alone + 2, (alone, sorted(ok)[-5:])
    assert median(rejected) < 1.0  # refused before any work


# Every entry point that queues model work, with a valid body, and how its protocol says "busy" (the error
# shapes and statuses of docs/protocols.md: Ollama answers a full queue with 503, the others with 429).
BUSY = [("/v1/embeddings", {"model": "tiny", "input": ["a"]}, "detail", 429),
        ("/v1/embeddings", {"model": "tiny", "input": ["a"], "output_dtype": None}, "detail", 429),  # Voyage
        ("/v2/embed", {"model": "tiny", "texts": ["a"]}, "message", 429),
        ("/v1/embed", {"model": "tiny", "texts": ["a"]}, "message", 429),
        ("/embed", {"inputs": ["a"]}, "error", 429),
        ("/tei/tiny/embed", {"inputs": "a"}, "error", 429),
        ("/", {"inputs": "a"}, "error", 429),
        ("/api/embed", {"model": "tiny", "input": "a"}, "error", 503),
        ("/api/embeddings", {"model": "tiny", "prompt": "a"}, "error", 503),
        ("/v1/classify", {"model": "tiny", "input": ["a"], "labels": ["x", "y"]}, "detail", 429),
        ("/v1/train", {"model": "tiny", "input": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]},
         "detail", 429),
        ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": ["a"]}, "detail", 429),
        ("/rerank", {"query": "q", "texts": ["a"]}, "error", 429),  # TEI
        ("/tei/tiny-ce/rerank", {"query": "q", "texts": ["a"]}, "error", 429),
        ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": ["a"], "top_k": 1, "truncation": True},
         "detail", 429),  # Voyage
        ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": [{"text": "a"}], "rank_fields": ["text"]},
         "message", 429),  # Cohere v1
        ("/v2/rerank", {"model": "tiny-ce", "query": "q", "documents": ["a"]}, "message", 429)]


def test_a_full_queue_is_refused_with_retry_after_on_every_entry_point(tiny_bert_path, tiny_cross_encoder_path):
    """Admission holds on every protocol's routes, classification and training too: while the model's queue
    is full, each answers its protocol's busy status with `Retry-After`, in its own error shape, at once."""
    from jinaserve.models.base import WorkItem

    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}"],
                          max_queue_items=8) as srv:
        services = srv.app.state.registry.services
        # other clients' work, held in the queue (the engine's own admission, as a long request would hold it)
        held = {name: services[name].admission.admit([WorkItem(None, 4)] * 8, timed=False) for name in services}
        try:
            for path, body, key, status in BUSY:
                r = httpx.post(srv.url + path, json=body, timeout=30)
                assert r.status_code == status, (path, body, r.status_code, r.text)
                assert int(r.headers["retry-after"]) >= 1, (path, r.headers)
                assert isinstance(r.json()[key], str) and "max_queue_items" in r.json()[key], (path, r.text)
        finally:
            for name, reserved in held.items():
                services[name].admission.release(*reserved)
        for path, body, _, _ in BUSY:  # and served once the queue has room
            assert httpx.post(srv.url + path, json=body, timeout=60).status_code == 200, path
