"""Paths shared by several protocols: the rule that picks the protocol from the body's fields, and both (or
all) shapes answered on the same path, each with its own response and error body."""

from __future__ import annotations

import numpy as np
import pytest
from proto_refs import CE, MINILM, post

from jinaserve.api.dispatch import embeddings_protocol, rerank_protocol

VOYAGE_SDK_EMBED = {"input": ["a"], "model": "m", "input_type": None, "truncation": True, "output_dtype": None,
                    "output_dimension": None, "encoding_format": "base64"}
VOYAGE_SDK_RERANK = {"query": "q", "documents": ["a"], "model": "m", "top_k": None, "truncation": True}


@pytest.mark.parametrize(("body", "protocol"), [
    (VOYAGE_SDK_EMBED, "voyage"),
    ({"input": "a", "output_dtype": "int8"}, "voyage"),
    ({"input": ["a"], "model": "m", "encoding_format": "base64"}, "jina"),  # OpenAI SDK
    ({"input": ["a"], "task": "retrieval.query", "dimensions": 8, "embedding_type": "ubinary"}, "jina"),
    ({"input": ["a"], "truncation": True, "output_dimension": 8, "input_type": "query"}, "jina"),  # Jina aliases
    (["not", "an", "object"], "jina"),
])
def test_embeddings_rule(body, protocol):
    assert embeddings_protocol(body) == protocol


@pytest.mark.parametrize(("body", "protocol"), [
    ({"query": "q", "texts": ["a"]}, "tei"),
    ({"query": "q", "texts": ["a"], "raw_scores": False, "return_text": True, "truncate": True}, "tei"),
    (VOYAGE_SDK_RERANK, "voyage"),
    ({"query": "q", "documents": ["a"], "top_k": 1, "max_tokens_per_doc": 16}, "jina"),  # Jina's top_k alias
    ({"query": "q", "documents": ["a"], "top_k": 1, "top_n": 1, "truncation": True}, "jina"),
    ({"query": "q", "documents": [{"title": "t"}], "rank_fields": ["title"]}, "cohere"),
    ({"query": "q", "documents": ["a"], "max_chunks_per_doc": 10}, "cohere"),
    ({"model": "m", "query": "q", "documents": ["a"], "top_n": 1, "return_documents": False}, "jina"),  # Cohere v1 SDK
    ({"query": "q", "documents": ["a"], "texts": ["b"]}, "jina"),
    ("text", "jina"),
])
def test_rerank_rule(body, protocol):
    assert rerank_protocol(body) == protocol


def test_v1_embeddings_answers_jina_and_voyage(proto_server):
    jina = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": ["a b"]}).json()
    voyage = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": ["a b"], "output_dtype": None}).json()
    assert jina["usage"].keys() == {"total_tokens", "prompt_tokens"} and voyage["usage"].keys() == {"total_tokens"}
    np.testing.assert_allclose(voyage["data"][0]["embedding"], jina["data"][0]["embedding"], atol=1e-7)
    bad_jina = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": "x", "dimensions": "many"})
    bad_voyage = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": "x", "output_dtype": "int4"})
    assert bad_jina.status_code == 422 and {"detail", "code", "error", "errors"} <= set(bad_jina.json())
    assert bad_voyage.status_code == 400 and set(bad_voyage.json()) == {"detail"}


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
def test_rerank_paths_answer_every_shape(proto_server, path):
    docs = ["a kitten", "bond yields"]
    jina = post(proto_server, path, {"model": CE, "query": "cats", "documents": docs, "top_k": 1,
                                     "max_tokens_per_doc": 64}).json()
    scores = post(proto_server, path, {"model": CE, "query": "cats", "documents": docs}).json()["results"]
    ref = {x["index"]: x["relevance_score"] for x in scores}
    assert jina["object"] == "list" and len(jina["results"]) == 1
    tei = post(proto_server, path + "?model=" + CE, {"query": "cats", "texts": docs}).json()
    voyage = post(proto_server, path, {"model": CE, "query": "cats", "documents": docs, "top_k": None,
                                       "truncation": True}).json()
    cohere = post(proto_server, path, {"model": CE, "query": "cats", "documents": docs,
                                       "max_chunks_per_doc": 10}).json()
    assert {x["index"]: x["score"] for x in tei} == ref
    assert {x["index"]: x["relevance_score"] for x in voyage["data"]} == ref
    assert {x["index"]: x["relevance_score"] for x in cohere["results"]} == ref and "meta" in cohere
    errors = {"jina": post(proto_server, path, {"model": CE, "query": "q", "documents": []}),
              "tei": post(proto_server, path, {"model": CE, "query": "q", "texts": []}),
              "voyage": post(proto_server, path, {"model": CE, "query": "q", "documents": [], "top_k": 1,
                                                  "truncation": True}),
              "cohere": post(proto_server, path, {"model": CE, "query": "q", "documents": [], "rank_fields": []})}
    assert "code" in errors["jina"].json() and errors["jina"].status_code == 422
    assert set(errors["tei"].json()) == {"error", "error_type"} and errors["tei"].status_code == 400
    assert set(errors["voyage"].json()) == {"detail"} and errors["voyage"].status_code == 400
    assert set(errors["cohere"].json()) == {"id", "message"} and errors["cohere"].status_code == 400
