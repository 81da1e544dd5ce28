"""Arbitrary JSON in any field of every protocol endpoint: never a 5xx, and every error in the body shape of the
protocol that answered (TEI `{error, error_type}`, Cohere `{id, message}`, Ollama `{error}`, Voyage `{detail}`)."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proto_refs import AUTH, CE, MINILM

TEI, COHERE, OLLAMA, VOYAGE = {"error", "error_type"}, {"id", "message"}, {"error"}, {"detail"}
ENDPOINTS = [
    ("/embed", {"inputs": ["a"], "normalize": True, "truncate": True, "prompt_name": None, "dimensions": 8}, TEI),
    ("/embed_all", {"inputs": "a", "truncate": True}, TEI),
    ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": False, "return_text": True}, TEI),
    ("/tokenize", {"inputs": "a", "add_special_tokens": True, "prompt_name": None}, TEI),
    ("/", {"inputs": "a", "dimensions": 4}, TEI),
    ("/v2/embed", {"model": MINILM, "texts": ["a"], "input_type": "search_query", "embedding_types": ["int8"],
                   "output_dimension": 8, "truncate": "END", "max_tokens": 512}, COHERE),
    ("/v2/embed", {"model": MINILM, "inputs": [{"content": [{"type": "text", "text": "a"}]}],
                   "input_type": "search_document"}, COHERE),
    ("/v1/embed", {"model": MINILM, "texts": ["a"], "embedding_types": ["float"], "truncate": "NONE"}, COHERE),
    ("/v2/rerank", {"model": CE, "query": "q", "documents": ["a"], "top_n": 1, "max_tokens_per_doc": 64}, COHERE),
    ("/v1/rerank", {"model": CE, "query": "q", "documents": [{"text": "a"}], "rank_fields": ["text"],
                    "return_documents": True}, COHERE),
    ("/api/embed", {"model": MINILM, "input": ["a"], "truncate": True, "dimensions": 8, "keep_alive": "5m"},
     OLLAMA),
    ("/api/embeddings", {"model": MINILM, "prompt": "a"}, OLLAMA),
    ("/api/show", {"model": MINILM}, OLLAMA),
    ("/v1/embeddings", {"model": MINILM, "input": ["a"], "input_type": "query", "truncation": True,
                        "output_dimension": 8, "output_dtype": "int8", "encoding_format": "base64"}, VOYAGE),
    ("/v1/rerank", {"model": CE, "query": "q", "documents": ["a"], "top_k": 1, "truncation": True,
                    "return_documents": True}, VOYAGE),
]
PROTECTED = {"output_dtype", "top_k", "truncation", "texts", "rank_fields"}  # keys the dispatch reads

TRICKY = ["\ud800", ["\ud800"], [], [[]], [0, -1], [{}], 2**64]  # values that once reached a model or an encoder
DATA_FIELDS = {"inputs", "texts", "input", "prompt", "documents", "query"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
VALUES = st.sampled_from(TRICKY) | JSON


@st.composite
def requests(draw):
    path, body, shape = draw(st.sampled_from(ENDPOINTS))
    body = dict(body)
    field = draw(st.sampled_from([k for k in body if k not in PROTECTED] + ["extra"]))
    if draw(st.booleans()) and field in body:
        del body[field]
    else:
        body[field] = draw(VALUES)
    return path, body, shape


def _check(srv, path: str, body: dict, shape: set[str]) -> int:
    content = json.dumps(body).encode()  # ASCII JSON: a lone surrogate travels as its \\ud800 escape
    r = httpx.post(srv.url + path, content=content, headers={**AUTH, "content-type": "application/json"}, timeout=60)
    assert r.status_code < 500, (path, body, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert set(r.json()) == shape, (path, body, r.text[:300])
    return r.status_code


def test_tricky_values_in_every_data_field(proto_server):
    for path, body, shape in ENDPOINTS:
        for field in DATA_FIELDS & set(body):
            for value in TRICKY:
                _check(proto_server, path, {**body, field: value}, shape)


def test_arbitrary_json_in_any_field(proto_server):
    statuses: dict[int, int] = {}

    @settings(max_examples=80, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=requests())
    def check(case) -> None:
        status = _check(proto_server, *case)
        statuses[status] = statuses.get(status, 0) + 1

    check()
    assert statuses.get(200, 0) > 10 and sum(n for s, n in statuses.items() if s >= 400) > 10, statuses
