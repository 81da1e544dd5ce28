"""Every error path answers JSON with a string `detail`, the right status and code; auth and limits."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest
from foundation_keys import API_KEYS

MINILM = "all-MiniLM-L6-v2"


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["error"]["message"] == body["detail"]
    assert isinstance(body["error"]["type"], str) and body["error"]["code"] == body["code"]
    assert body["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code
    return body


@pytest.mark.parametrize(("path", "payload", "status", "code"), [
    ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, 400, "INPUT_MODEL_NOT_FOUND"),
    ("/v1/embeddings", {"model": MINILM}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": []}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": 5}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": [["a"]]}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": [{"nope": 1}]}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": "x", "embedding_type": "int4"}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": "x", "dimensions": 0}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": "x", "dimensions": 385}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": MINILM, "input": "x", "late_chunking": True}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/embeddings", {"model": "tiny-ce", "input": "x"}, 400, "INPUT_INVALID"),
    ("/v1/rerank", {"model": "tiny-ce", "query": "q"}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": []}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": ["a"], "top_n": 0}, 422,
     "INPUT_VALIDATION_FAILED"),
    ("/v1/rerank", {"model": "tiny-ce", "query": "q", "documents": [{"x": 1}]}, 422, "INPUT_VALIDATION_FAILED"),
    ("/v1/rerank", {"model": "nope", "query": "q", "documents": ["a"]}, 400, "INPUT_MODEL_NOT_FOUND"),
])
def test_error_bodies(main_server, path, payload, status, code):
    body = assert_error(httpx.post(main_server.url + path, json=payload), status, code)
    if status == 422:
        assert body["errors"] and all(isinstance(e["field"], str) and isinstance(e["message"], str)
                                      for e in body["errors"])


def test_validation_error_names_the_field(main_server):
    body = assert_error(httpx.post(main_server.url + "/v1/embeddings",
                                   json={"model": MINILM, "input": "x", "dimensions": 999}), 422)
    assert body["errors"][0]["field"] == "body -> dimensions"
    assert "384" in body["detail"]


def test_invalid_json_404_405(main_server):
    assert_error(httpx.post(main_server.url + "/v1/embeddings", content=b"{not json",
                            headers={"content-type": "application/json"}), 400, "INPUT_INVALID_JSON")
    body = assert_error(httpx.get(main_server.url + "/v2/nothing"), 404, "RESOURCE_NOT_FOUND")
    assert "/v2/nothing" in body["detail"]
    assert_error(httpx.get(main_server.url + "/v1/embeddings"), 405, "METHOD_NOT_ALLOWED")


def test_auth_ignored_when_no_key_configured(main_server):
    r = httpx.post(main_server.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                   headers={"authorization": "Bearer whatever"})
    assert r.status_code == 200
    r = httpx.post(main_server.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                   headers={"authorization": "garbage"})
    assert r.status_code == 200


def test_auth_required_when_keys_set(guarded_server):
    url = guarded_server.url + "/v1/embeddings"
    body = {"model": "tiny", "input": "x"}
    assert_error(httpx.post(url, json=body), 401, "AUTH_MISSING_API_KEY")
    assert_error(httpx.post(url, json=body, headers={"authorization": "Bearer wrong"}), 401, "AUTH_INVALID_API_KEY")
    assert_error(httpx.post(url, json=body, headers={"authorization": "Basic key-one"}), 401, "AUTH_INVALID_FORMAT")
    for key in API_KEYS:  # every configured key works
        assert httpx.post(url, json=body, headers={"authorization": f"Bearer {key}"}).status_code == 200
    assert_error(httpx.get(guarded_server.url + "/v1/models"), 401)
    rr = httpx.post(guarded_server.url + "/v1/rerank", json={"model": "tiny", "query": "q", "documents": ["a"]})
    assert_error(rr, 401)
    # probes and metrics stay open for orchestrators
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(guarded_server.url + path).status_code == 200


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {API_KEYS[0]}"}


def test_body_size_limit_413(guarded_server):
    big = {"model": "tiny", "input": ["x" * 5000]}
    body = assert_error(httpx.post(guarded_server.url + "/v1/embeddings", json=big, headers=_auth()), 413,
                        "INPUT_TOO_LARGE")
    assert "4096" in body["detail"]

    def chunks():  # no content-length: counted while streaming
        yield b'{"model": "tiny", "input": ["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"]}'

    r = httpx.post(guarded_server.url + "/v1/embeddings", content=chunks(),
                   headers={**_auth(), "content-type": "application/json"})
    assert_error(r, 413, "INPUT_TOO_LARGE")
    # the server still serves
    assert httpx.post(guarded_server.url + "/v1/embeddings", json={"model": "tiny", "input": "ok"},
                      headers=_auth()).status_code == 200


def test_max_inputs_422(guarded_server):
    body = assert_error(httpx.post(guarded_server.url + "/v1/embeddings",
                                   json={"model": "tiny", "input": ["a"] * 5}, headers=_auth()), 422)
    assert "at most 4" in body["detail"]
    body = assert_error(httpx.post(guarded_server.url + "/v1/rerank",
                                   json={"model": "tiny", "query": "q", "documents": ["a"] * 5}, headers=_auth()), 422)
    assert "at most 4" in body["detail"]


def test_queue_full_429_with_retry_after(guarded_server):
    # 3 items can never fit a queue of 2: refused at once, before any work, with a 413 naming the limit
    # (a 429 would tell the client to retry something that can never pass)
    r = httpx.post(guarded_server.url + "/v1/embeddings", json={"model": "tiny", "input": ["a", "b", "c"]},
                   headers=_auth())
    body = assert_error(r, 413, "INPUT_TOO_LARGE")
    assert "max_queue_items=2" in body["detail"] and "retry-after" not in r.headers
    # under concurrent load, every answer is either a result or a clean 429 with Retry-After
    def one(i: int) -> int:
        return httpx.post(guarded_server.url + "/v1/embeddings", json={"model": "tiny", "input": [f"t {i}", "u"]},
                          headers=_auth(), timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(16)))
    assert set(codes) <= {200, 429} and 200 in codes
    if 429 in codes:
        metrics = httpx.get(guarded_server.url + "/metrics").text
        assert 'jinaserve_rejected_total{model="tiny"}' in metrics
