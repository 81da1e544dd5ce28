"""POST /v1/rerank over real HTTP with the bodies real clients send (research/clients.md), replayed with
httpx: LangChain (null top_n, documents as objects), LlamaIndex, pymilvus (reads document.text),
LibreChat (hard-coded jina-reranker-v2-base-multilingual), Open WebUI (top_n = len(documents))."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import RunningServer, server_in_thread

DOCS = ["cats meow and purr", "dogs bark in the park", "cats sleep on a mat"]


@pytest.fixture(scope="module")
def server(tiny_v3_path: Path, tiny_v2) -> Iterator[RunningServer]:
    with server_in_thread(models=[f"jina-reranker-v3={tiny_v3_path}",
                                  f"jina-reranker-v2-base-multilingual={tiny_v2[0]}"],
                          max_body_bytes=64 * 1024, max_documents_per_request=300) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RunningServer):
    with server.client() as c:
        yield c


def post(client, body: dict, status: int = 200) -> dict:
    r = client.post("/v1/rerank", json=body, headers={"Authorization": "Bearer x"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


@pytest.mark.parametrize("model", ["jina-reranker-v3", "jina-reranker-v2-base-multilingual"])
def test_response_shape_and_order(client, model):
    body = post(client, {"model": model, "query": "cats", "documents": DOCS})
    assert list(body) == ["model", "object", "usage", "results"]
    assert body["model"] == model and body["object"] == "list" and body["usage"]["total_tokens"] > 0
    results = body["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    lo, hi = (-1.0, 1.0) if model == "jina-reranker-v3" else (0.0, 1.0)
    assert all(lo <= s <= hi for s in scores)
    for r in results:
        assert r["document"] == {"text": DOCS[r["index"]]}
        assert "embedding" not in r


def test_langchain_body_null_top_n_and_object_documents(client):
    body = post(client, {"query": "cats", "documents": [{"text": d} for d in DOCS], "model": "jina-reranker-v3",
                         "top_n": None})
    assert len(body["results"]) == 3
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in body["results"])


def test_llamaindex_and_pymilvus_bodies(client):
    li = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS, "top_n": 2})
    assert len(li["results"]) == 2
    pm = post(client, {"query": "cats", "documents": DOCS, "model": "jina-reranker-v2-base-multilingual",
                       "top_n": 1})
    assert len(pm["results"]) == 1 and pm["results"][0]["document"]["text"] in DOCS


def test_librechat_body_gets_nonzero_scores(client):
    body = post(client, {"model": "jina-reranker-v2-base-multilingual", "query": "cats", "top_n": 2,
                         "documents": DOCS, "return_documents": True})
    assert len(body["results"]) == 2 and all(r["relevance_score"] > 0 for r in body["results"])


def test_open_webui_top_n_equals_len(client):
    body = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS, "top_n": len(DOCS)})
    assert len(body["results"]) == 3


def test_hub_id_as_model_name(client):
    body = post(client, {"model": "jinaai/jina-reranker-v3", "query": "cats", "documents": DOCS})
    assert body["model"] == "jina-reranker-v3"


def test_aliases_top_k_and_max_tokens_per_doc(client):
    long_doc = "cats " * 400
    a = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": [long_doc, "dogs"], "top_k": 1,
                      "max_tokens_per_doc": 16})
    b = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": [long_doc, "dogs"], "top_n": 1,
                      "max_doc_length": 16})
    assert len(a["results"]) == 1
    assert a["results"] == b["results"]
    full = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": [long_doc, "dogs"]})
    assert full["usage"]["total_tokens"] > a["usage"]["total_tokens"]


def test_return_documents_false_and_embeddings(client):
    body = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS,
                         "return_documents": False, "return_embeddings": True})
    for r in body["results"]:
        assert "document" not in r
        v = np.asarray(r["embedding"])
        assert v.shape == (512,) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_instruction_changes_v3_scores(client):
    a = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS})
    b = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS,
                      "instruction": "prefer passages about dogs"})
    sa = {r["index"]: r["relevance_score"] for r in a["results"]}
    sb = {r["index"]: r["relevance_score"] for r in b["results"]}
    assert any(abs(sa[i] - sb[i]) > 1e-6 for i in sa)


def test_long_lists_are_split_and_all_ranked(client):
    docs = [f"document number {i} about cats and dogs" for i in range(260)]
    body = post(client, {"model": "jina-reranker-v3", "query": "cats", "documents": docs, "top_n": 300})
    assert sorted(r["index"] for r in body["results"]) == list(range(260))


@pytest.mark.parametrize("body,field", [
    ({"model": "jina-reranker-v3", "query": "q", "documents": DOCS, "top_n": 0}, "body -> top_n"),
    ({"model": "jina-reranker-v3", "query": "q", "documents": DOCS, "max_doc_length": 9000},
     "body -> max_doc_length"),
    ({"model": "jina-reranker-v3", "query": "q", "documents": []}, "body -> documents"),
    ({"model": "jina-reranker-v3", "query": "q", "documents": ["d"] * 301}, "body -> documents"),
])
def test_invalid_requests_are_422(client, body, field):
    err = post(client, body, 422)
    assert isinstance(err["detail"], str) and field in err["detail"]


def test_oversize_body_is_413(client):
    r = client.post("/v1/rerank", json={"model": "jina-reranker-v3", "query": "q", "documents": ["x" * 70_000]})
    assert r.status_code == 413 and isinstance(r.json()["detail"], str)


def test_unknown_model_is_400(client):
    err = post(client, {"model": "jina-reranker-v9", "query": "q", "documents": DOCS}, 400)
    assert "jina-reranker-v9" in err["detail"]
