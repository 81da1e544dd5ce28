"""POST /v1/rerank over real HTTP.

Two kinds of client: the real client libraries LangChain `JinaRerank` (`langchain-community`: null
top_n, documents as objects) and Milvus `JinaRerankFunction` (`pymilvus-model`: hard-coded
jina-reranker-v2-base-multilingual, reads `document.text`), pointed at the test server by patching
their module URL constants as docs/clients.md describes; and the bodies of clients too heavy to
install here, replayed with httpx: LlamaIndex, LibreChat (hard-coded v2 name, needs nonzero scores),
Open WebUI (top_n = len(documents))."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import RunningServer, server_in_thread

DOCS = ["cats meow and purr", "dogs bark in the park", "cats sleep on a mat"]


@pytest.fixture(scope="module")
def server(tiny_v3_path: Path, tiny_v2, tiny_m0) -> Iterator[RunningServer]:
    with server_in_thread(models=[f"jina-reranker-v3={tiny_v3_path}",
                                  f"jina-reranker-v2-base-multilingual={tiny_v2[0]}",
                                  f"jina-reranker-m0={tiny_m0[0]}"],
                          max_body_bytes=64 * 1024, max_documents_per_request=300, max_input_chars=20_000) as srv:
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


def test_real_langchain_client(server, monkeypatch):
    jina_rerank = pytest.importorskip("langchain_community.document_compressors.jina_rerank")
    from langchain_core.documents import Document

    monkeypatch.setattr(jina_rerank, "JINA_API_URL", server.url + "/v1/rerank")
    reranker = jina_rerank.JinaRerank(jina_api_key="x", model="jina-reranker-v3", top_n=2)
    direct = {r["index"]: r["relevance_score"] for r in post(
        server.client(), {"model": "jina-reranker-v3", "query": "cats", "documents": DOCS})["results"]}
    best = max(direct, key=direct.__getitem__)
    kept = reranker.compress_documents([Document(page_content=d) for d in DOCS], "cats")
    assert len(kept) == 2 and kept[0].page_content == DOCS[best]
    assert kept[0].metadata["relevance_score"] >= kept[1].metadata["relevance_score"]
    # rerank(top_n=None) sends "top_n": null; documents may be objects
    every = reranker.rerank([{"text": d} for d in DOCS], "cats", top_n=None)
    assert sorted(r["index"] for r in every) == [0, 1, 2]
    assert all(abs(r["relevance_score"] - direct[r["index"]]) < 1e-6 for r in every)
    with pytest.raises(RuntimeError, match="jina-reranker-v9"):
        reranker.rerank(DOCS, "cats", model="jina-reranker-v9")


def test_real_pymilvus_client(server, monkeypatch):
    jinaai = pytest.importorskip("pymilvus.model.reranker.jinaai")

    monkeypatch.setattr(jinaai, "API_URL", server.url + "/v1/rerank")
    rerank = jinaai.JinaRerankFunction(api_key="x")  # model_name defaults to jina-reranker-v2-base-multilingual
    out = rerank("cats", DOCS, top_k=2)
    assert len(out) == 2 and out[0].score >= out[1].score > 0
    assert all(r.text == DOCS[r.index] for r in out)


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
    ({"model": "jina-reranker-v2-base-multilingual", "query": "q", "documents": ["d", "x" * 20_001]},
     "body -> documents -> 1"),
    ({"model": "jina-reranker-v3", "query": "q", "documents": ["d", 5]}, "body -> documents"),
])
def test_invalid_requests_are_422(client, body, field):
    err = post(client, body, 422)
    assert isinstance(err["detail"], str) and field in err["detail"]


def test_oversize_body_is_413(client):
    r = client.post("/v1/rerank", json={"model": "jina-reranker-v3", "query": "q", "documents": ["x" * 70_000]})
    assert r.status_code == 413 and isinstance(r.json()["detail"], str)


def test_m0_ranks_text_and_image_documents(client):
    from test_m0 import png_data_uri

    image = png_data_uri(60, 40, 2)
    body = post(client, {"model": "jina-reranker-m0", "query": "cats",
                         "documents": ["cats purr", {"image": image}, {"text": "dogs bark"}]})
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    assert all(0 < r["relevance_score"] < 1 for r in body["results"])
    docs = {r["index"]: r["document"] for r in body["results"]}
    assert docs == {0: {"text": "cats purr"}, 1: {"image": image}, 2: {"text": "dogs bark"}}


@pytest.mark.parametrize("model", ["jina-reranker-v3", "jina-reranker-v2-base-multilingual"])
def test_image_documents_for_text_rerankers_are_400(client, model):
    from test_m0 import png_data_uri

    err = post(client, {"model": model, "query": "q", "documents": ["a", {"image": png_data_uri(8, 8, 0)}]}, 400)
    assert "index 1" in err["detail"] and "text only" in err["detail"]


def test_bad_image_for_m0_is_400(client):
    err = post(client, {"model": "jina-reranker-m0", "query": "q", "documents": [{"image": "nope"}]}, 400)
    assert "index 0" in err["detail"]


def test_unknown_model_is_400(client):
    err = post(client, {"model": "jina-reranker-v9", "query": "q", "documents": DOCS}, 400)
    assert "jina-reranker-v9" in err["detail"]
