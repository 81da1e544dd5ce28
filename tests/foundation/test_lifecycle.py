"""Server life: failing batches stay isolated, structured request logs, a named model that cannot load,
the offline default-model fallback as `make run` starts it, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from helpers import server_in_thread, server_process
from jinaserve.config import Settings
from jinaserve.engine.registry import ModelRegistry
from jinaserve.engine.service import ModelService
from jinaserve.logs import ConsoleFormatter, JSONFormatter
from jinaserve.models.loading import LoadOptions
from jinaserve.models.resolve import resolve
from jinaserve.models.sentence_transformer import SentenceTransformerFamily


class FaultyFamily(SentenceTransformerFamily):
    """The real tiny bi-encoder, whose forward pass fails whenever a batch holds the token `poison`
    (as a real model can fail on one input: a device assert, an out-of-range position...)."""

    poison_id: int = -1

    def run_batch(self, payloads):
        if any(self.poison_id in p.ids for p in payloads):
            raise RuntimeError("device-side assert triggered")
        return super().run_batch(payloads)


@pytest.fixture(scope="module")
def faulty_server(tiny_bert_path):
    ref = resolve(f"faulty={tiny_bert_path}")
    family = FaultyFamily.load(ref.spec, tiny_bert_path, LoadOptions(device="cpu", dtype="float32"))
    family.poison_id = family.tokenizer.convert_tokens_to_ids("poison")
    assert family.poison_id != family.tokenizer.unk_token_id
    settings = Settings(offline=True)
    registry = ModelRegistry(settings)
    registry.add(ModelService("faulty", family, max_batch_tokens=4096))
    with server_in_thread(settings, registry=registry) as srv:
        yield srv
    registry.close()


def test_failing_batch_fails_only_its_request(faulty_server):
    url = faulty_server.url + "/v1/embeddings"
    bad = httpx.post(url, json={"model": "faulty", "input": ["fine", "this is poison"]})
    assert bad.status_code == 500
    body = bad.json()
    assert body["code"] == "INTERNAL_ERROR" and isinstance(body["detail"], str)
    assert "faulty" in body["detail"] and "RuntimeError" in body["detail"]

    def post(i: int) -> int:
        text = "poison pill" if i % 4 == 0 else f"healthy text number {i}"
        return httpx.post(url, json={"model": "faulty", "input": [text]}, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(24)))
    assert codes == [500 if i % 4 == 0 else 200 for i in range(24)]
    assert httpx.post(url, json={"model": "faulty", "input": "still serving"}).status_code == 200
    assert httpx.get(faulty_server.url + "/readyz").status_code == 200


def test_one_structured_log_line_per_request(faulty_server, caplog):
    caplog.set_level(logging.INFO, logger="jinaserve.access")
    r = httpx.post(faulty_server.url + "/v1/embeddings", json={"model": "faulty", "input": ["a b", "c"]},
                   headers={"x-request-id": "log-test-1"})
    assert r.status_code == 200
    httpx.get(faulty_server.url + "/healthz")  # probes are not logged
    deadline = time.time() + 5
    while time.time() < deadline and not [x for x in caplog.records if x.name == "jinaserve.access"]:
        time.sleep(0.05)
    records = [x for x in caplog.records if x.name == "jinaserve.access"]
    assert len(records) == 1
    rec = records[0]
    line = orjson.loads(JSONFormatter().format(rec))
    assert line["request_id"] == "log-test-1" and line["model"] == "faulty" and line["inputs"] == 2
    assert line["tokens"] == 4 + 3 and line["status"] == 200 and line["path"] == "/v1/embeddings"
    assert isinstance(line["latency_ms"], float) and line["level"] == "info" and line["ts"].endswith("Z")
    console = ConsoleFormatter().format(rec)
    assert "\n" not in console and "request_id=log-test-1" in console and "tokens=7" in console


def test_named_model_that_cannot_load(tiny_bert_path, tmp_path):
    """Offline with an empty cache: jina-embeddings-v3 fails → /readyz 503 naming it, its requests 503 JSON,
    the other model keeps serving. Nothing is silently substituted."""
    with server_in_thread(models=[f"tiny={tiny_bert_path}", "jina-embeddings-v3"],
                          cache_dir=str(tmp_path / "empty-cache")) as srv:
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert "jina-embeddings-v3" in body["detail"]
        assert body["models"]["jina-embeddings-v3"]["state"] == "failed"
        assert "offline" in body["models"]["jina-embeddings-v3"]["error"]
        assert body["models"]["tiny"]["state"] == "ready"
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "jina-embeddings-v3", "input": "x"})
        assert r.status_code == 503
        assert r.json()["code"] == "SERVICE_UNAVAILABLE" and "failed to load" in r.json()["detail"]
        assert httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"}).status_code == 200
        assert [m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]] == ["tiny"]


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINASERVE_")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "JINASERVE_THREADS": "1",
                "JINASERVE_MAX_BATCH_SIZE": "4"})  # small batches: a big request stays queued a while
    env.pop("HF_HUB_CACHE", None)
    return env


def test_offline_default_fallback_and_graceful_sigterm(tmp_path):
    """`jinaserve serve` with no models, no hub and no cache (as `make run` here): serves the bundled
    all-MiniLM-L6-v2, says so in one log line, answers embeddings and rerank, and on SIGTERM finishes the
    request in flight and exits 0."""
    with server_process(env=_clean_env(tmp_path)) as srv:
        proc = srv.process
        ready = httpx.get(srv.url + "/readyz").json()
        assert ready["status"] == "ready" and list(ready["models"]) == ["all-MiniLM-L6-v2"]
        e = httpx.post(srv.url + "/v1/embeddings", json={"input": ["hello", "world"]})
        assert e.status_code == 200 and e.json()["model"] == "all-MiniLM-L6-v2"
        assert len(e.json()["data"][0]["embedding"]) == 384
        rr = httpx.post(srv.url + "/v1/rerank", json={"query": "greeting", "documents": ["hello there", "tax law"]})
        assert rr.status_code == 200 and rr.json()["results"][0]["index"] == 0

        # a big request in flight when SIGTERM arrives still gets its answer
        result: dict[str, httpx.Response] = {}
        big = {"input": [" ".join(["word"] * 60) + f" {i}" for i in range(32)]}
        t = threading.Thread(target=lambda: result.setdefault(
            "r", httpx.post(srv.url + "/v1/embeddings", json=big, timeout=120)))
        t.start()
        deadline = time.time() + 60
        while True:
            assert time.time() < deadline, "the big request never reached the queue"
            m = httpx.get(srv.url + "/metrics").text
            depth = re.search(r'jinaserve_queue_depth\{model="all-MiniLM-L6-v2"\} (\S+)', m)
            if depth and float(depth.group(1)) > 0:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert result["r"].status_code == 200 and len(result["r"].json()["data"]) == 32
        assert proc.wait(timeout=60) == 0
        out = proc.stdout.read()
    fallback = [ln for ln in out.splitlines() if "bundled all-MiniLM-L6-v2" in ln]
    assert len(fallback) == 1, out
    assert "no model hub reachable" in fallback[0] and "jina-embeddings-v3" in fallback[0]
    assert "shutdown complete" in out
    assert "Traceback" not in out and "color_message" not in out
    assert "Waiting for connections to close" in out
