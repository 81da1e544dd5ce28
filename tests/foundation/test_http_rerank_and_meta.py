"""POST /v1/rerank, GET /v1/models, health probes, /metrics and OpenAPI over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

MINILM = "all-MiniLM-L6-v2"
QUERY = "How do I bake bread at home?"
DOCS = [
    "The stock market fell sharply on Tuesday.",
    "Knead the dough, let it rise, then bake the loaf in a hot oven.",
    "Football season starts in September.",
    "Home baking: a simple bread recipe with flour, water, yeast and salt.",
]


def rerank(srv, path: str = "/v1/rerank", **body) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=60)


def test_cross_encoder_rerank_shape_and_order(main_server):
    r = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["model", "object", "usage", "results"]
    assert body["model"] == "tiny-ce" and body["object"] == "list"
    assert body["usage"]["total_tokens"] > 0 and set(body["usage"]) == {"total_tokens"}
    res = body["results"]
    assert sorted(x["index"] for x in res) == [0, 1, 2, 3]
    scores = [x["relevance_score"] for x in res]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)  # sigmoid of the single logit
    for x in res:
        assert list(x) == ["index", "relevance_score", "document"]
        assert x["document"] == {"text": DOCS[x["index"]]}
        assert x["relevance_score"] == round(x["relevance_score"], 8)  # 8 decimals, as the hosted API
    assert any(s != round(s, 6) for s in scores)  # ... and not fewer


def test_rerank_with_embedding_model_ranks_by_cosine(main_server):
    r = rerank(main_server, model=MINILM, query=QUERY, documents=DOCS)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    # the two baking documents come first (a real model, a clear-cut case)
    assert {res[0]["index"], res[1]["index"]} == {1, 3}
    # scores are exactly the cosine between the query and document embeddings
    e = httpx.post(main_server.url + "/v1/embeddings", json={"model": MINILM, "input": [QUERY, *DOCS]}).json()
    vecs = np.array([d["embedding"] for d in e["data"]])
    cos = vecs[1:] @ vecs[0]
    for x in res:
        assert x["relevance_score"] == pytest.approx(cos[x["index"]], abs=1e-5)


def test_top_n_return_documents_and_aliases(main_server):
    full = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS).json()["results"]
    top2 = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS, top_n=2).json()["results"]
    assert [x["index"] for x in top2] == [x["index"] for x in full[:2]]
    top_k = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS, top_k=1).json()["results"]
    assert [x["index"] for x in top_k] == [full[0]["index"]]
    everything = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS, top_n=None).json()["results"]
    assert len(everything) == 4
    bare = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS, return_documents=False).json()
    assert all(list(x) == ["index", "relevance_score"] for x in bare["results"])
    # documents as {"text"} objects and query as {"text"}; the unprefixed path
    objs = rerank(main_server, "/rerank", model="tiny-ce", query={"text": QUERY},
                  documents=[{"text": d} for d in DOCS], unknown_field=1).json()["results"]
    assert [(x["index"], x["document"]) for x in objs] == [(x["index"], x["document"]) for x in full]
    np.testing.assert_allclose([x["relevance_score"] for x in objs], [x["relevance_score"] for x in full],
                               atol=1e-6)


def test_rerank_model_null_uses_first_reranker(main_server):
    r = rerank(main_server, model=None, query=QUERY, documents=DOCS[:2])
    assert r.status_code == 200 and r.json()["model"] == "tiny-ce"


def test_rerank_scores_independent_of_batch_company(main_server):
    """A document's score does not depend on the other documents in the request."""
    many = rerank(main_server, model="tiny-ce", query=QUERY, documents=DOCS).json()["results"]
    for x in many:
        alone = rerank(main_server, model="tiny-ce", query=QUERY, documents=[DOCS[x["index"]]]).json()
        assert alone["results"][0]["relevance_score"] == pytest.approx(x["relevance_score"], abs=1e-5)


def test_models_endpoint(main_server):
    r = httpx.get(main_server.url + "/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    cards = {m["id"]: m for m in body["data"]}
    assert set(cards) == {MINILM, "tiny", "tiny-ce"}
    assert cards[MINILM]["object"] == "model" and cards[MINILM]["kind"] == "embedding"
    assert cards[MINILM]["dimensions"] == 384 and cards[MINILM]["max_tokens"] == 256
    assert cards["tiny-ce"]["kind"] == "rerank"
    one = httpx.get(main_server.url + f"/v1/models/{MINILM}").json()
    assert one["id"] == MINILM
    missing = httpx.get(main_server.url + "/v1/models/nope")
    assert missing.status_code == 404 and isinstance(missing.json()["detail"], str)  # as OpenAI answers


def test_health_probes(main_server):
    for path in ("/health", "/healthz"):
        r = httpx.get(main_server.url + path)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(main_server.url + "/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert {m["state"] for m in body["models"].values()} == {"ready"}


def test_metrics(main_server):
    httpx.post(main_server.url + "/v1/embeddings", json={"model": "tiny", "input": ["metrics a", "metrics b c"]})
    text = httpx.get(main_server.url + "/metrics").text
    for name in ("jinaserve_requests_total", "jinaserve_request_duration_seconds_bucket",
                 "jinaserve_batch_size_bucket", "jinaserve_batch_padded_tokens_bucket",
                 "jinaserve_batch_duration_seconds_bucket", "jinaserve_queue_depth",
                 "jinaserve_input_tokens_total", "jinaserve_inputs_total", "jinaserve_model_ready",
                 "jinaserve_rejected_total"):
        assert name in text, name
    assert 'jinaserve_requests_total{endpoint="/v1/embeddings",model="tiny",status="200"}' in text
    assert 'jinaserve_queue_depth{model="tiny"} 0.0' in text
    tokens = [ln for ln in text.splitlines() if ln.startswith('jinaserve_input_tokens_total{model="tiny"}')]
    assert tokens and float(tokens[0].split()[-1]) >= 8  # 2 inputs with [CLS]/[SEP]


def test_openapi_docs(main_server):
    spec = httpx.get(main_server.url + "/openapi.json").json()
    assert {"/v1/embeddings", "/v1/rerank", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    docs = httpx.get(main_server.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
