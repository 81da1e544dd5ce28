"""OpenAI's Batch API through the real `openai` SDK (base_url = this server): files.create, batches.create,
batches.retrieve, files.content, batches.list, batches.cancel; /v1/embeddings and /v1/rerank lines; output
and error files keyed by custom_id; vectors equal to direct /v1/embeddings calls."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
from batch_helpers import direct_vectors

openai = pytest.importorskip("openai")

TEXTS = ["first document about cats", "second document about dogs", "third, on the stock market"]


def _client(srv):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)


def _jsonl(lines: list[dict]) -> io.BytesIO:
    buf = io.BytesIO("\n".join(json.dumps(x) for x in lines).encode() + b"\n")
    buf.name = "requests.jsonl"
    return buf


def _wait(client, batch_id: str, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(0.05)
    raise TimeoutError(batch_id)


def _by_id(text: str) -> dict[str, dict]:
    return {json.loads(x)["custom_id"]: json.loads(x) for x in text.splitlines() if x.strip()}


def test_embeddings_batch_with_the_openai_sdk(batch_server):
    client = _client(batch_server)
    lines = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "minilm", "input": t, "encoding_format": "base64"}} for i, t in enumerate(TEXTS)]
    lines.append({"custom_id": "two", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "minilm", "input": TEXTS[:2], "dimensions": 32}})
    lines.append({"custom_id": "bad-model", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "no-such-model", "input": "x"}})
    f = client.files.create(file=_jsonl(lines), purpose="batch")
    assert f.purpose == "batch" and f.filename == "requests.jsonl" and f.bytes > 0
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h",
                                  metadata={"owner": "test"})
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"owner": "test"}
    done = _wait(client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 4, 1)
    out = _by_id(client.files.content(done.output_file_id).text)
    assert sorted(out) == ["req-0", "req-1", "req-2", "two"]
    with batch_server.client() as http:
        ref = direct_vectors(http, "minilm", TEXTS)
        ref32 = direct_vectors(http, "minilm", TEXTS[:2], dimensions=32)
    for i in range(3):
        resp = out[f"req-{i}"]["response"]
        assert resp["status_code"] == 200 and out[f"req-{i}"]["error"] is None
        vec = np.frombuffer(base64.b64decode(resp["body"]["data"][0]["embedding"]), dtype="<f4")
        np.testing.assert_allclose(vec, ref[i], atol=1e-6)
    np.testing.assert_allclose([d["embedding"] for d in out["two"]["response"]["body"]["data"]], ref32, atol=1e-6)
    errors = _by_id(client.files.content(done.error_file_id).text)
    assert list(errors) == ["bad-model"]
    assert errors["bad-model"]["response"]["status_code"] == 400
    assert "not served" in errors["bad-model"]["response"]["body"]["error"]["message"]
    assert batch.id in [b.id for b in client.batches.list(limit=100)]
    page = client.batches.list(limit=1)
    assert len(page.data) == 1


def test_rerank_batch_validation_and_cancel(batch_server):
    client = _client(batch_server)
    docs = ["a cat on a mat", "stock prices fell", "the kitten sleeps"]
    lines = [{"custom_id": "q1", "method": "POST", "url": "/v1/rerank",
              "body": {"model": "tiny-ce", "query": "cats", "documents": docs, "top_n": 2}}]
    f = client.files.create(file=_jsonl(lines), purpose="batch")
    done = _wait(client, client.batches.create(input_file_id=f.id, endpoint="/v1/rerank",
                                               completion_window="24h").id)
    assert done.status == "completed" and done.request_counts.completed == 1
    body = _by_id(client.files.content(done.output_file_id).text)["q1"]["response"]["body"]
    with batch_server.client() as http:
        online = http.post("/v1/rerank", json={"model": "tiny-ce", "query": "cats", "documents": docs,
                                               "top_n": 2}).json()
    assert body["results"] == online["results"] and body["usage"] == online["usage"]

    bad = [{"custom_id": "x", "method": "GET", "url": "/v1/embeddings", "body": {}},
           {"custom_id": "x", "method": "POST", "url": "/v1/rerank", "body": {"input": "y"}}]
    f = client.files.create(file=_jsonl(bad), purpose="batch")
    failed = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    assert failed.status == "failed"
    codes = {(e.line, e.code) for e in failed.errors.data}
    assert {(1, "invalid_method"), (2, "duplicate_custom_id"), (2, "mismatched_endpoint")} <= codes

    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_does_not_exist")
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")

    many = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "minilm", "input": f"line {i} " * 30}} for i in range(2000)]
    f = client.files.create(file=_jsonl(many), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = _wait(client, batch.id)
    assert done.status == "cancelled" and done.request_counts.completed < 2000
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
