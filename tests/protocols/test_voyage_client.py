"""Voyage over HTTP with the real `voyageai` SDK (`Client(base_url=".../v1")`) on the paths it shares with
Jina/OpenAI: embeddings (the SDK's default base64, `input_type` → task, `output_dimension`, every
`output_dtype` against a reference computed here) and rerank (`top_k`), and Voyage's `{"detail"}` errors.
Vectors and scores equal the Jina endpoint's (1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
import voyageai
import voyageai.error
from proto_refs import CE, KEY, MINILM, V5, jina_scores, jina_vectors, post

TEXTS = ["Berlin is the capital of Germany.", "embeddings for search and retrieval"]
DOCS = ["cats purr and sleep", "the stock market fell", "a kitten chasing a ball of wool"]


@pytest.fixture(scope="module")
def vo(proto_server):
    return voyageai.Client(api_key=KEY, base_url=proto_server.url + "/v1")


def test_embed_equals_jina(vo, proto_server):
    r = vo.embed(TEXTS, model=MINILM)  # the SDK asks for base64 float32 and decodes it
    np.testing.assert_allclose(np.array(r.embeddings), jina_vectors(proto_server, MINILM, TEXTS), atol=1e-6)
    assert r.total_tokens > 0


@pytest.mark.parametrize(("input_type", "task"), [("query", "retrieval.query"), ("document", "retrieval.passage"),
                                                  (None, None)])
def test_input_type_and_output_dimension(vo, proto_server, input_type, task):
    r = vo.embed(TEXTS, model=V5, input_type=input_type, output_dimension=8)
    fields = {"task": task} if task else {}
    np.testing.assert_allclose(np.array(r.embeddings), jina_vectors(proto_server, V5, TEXTS, dimensions=8, **fields),
                               atol=1e-6)


def test_output_dtypes_against_reference(vo, proto_server):
    f = jina_vectors(proto_server, MINILM, TEXTS).astype(np.float64)
    # reference, written out here: symmetric per-vector scale to ±127; uint8 = int8 + 128; bits = sign > 0 packed
    # most significant bit first; binary = ubinary - 128
    int8 = np.clip(np.rint(f * (127.0 / np.abs(f).max(axis=1, keepdims=True))), -127, 127)
    ubinary = np.packbits(f > 0, axis=1).astype(np.int64)
    refs = {"int8": int8, "uint8": int8 + 128, "ubinary": ubinary, "binary": ubinary - 128}
    for dtype, ref in refs.items():
        got = np.array(vo.embed(TEXTS, model=MINILM, output_dtype=dtype).embeddings)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= (1 if "int8" in dtype else 0), dtype  # ±1: float32 rounding at .5
    raw = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": TEXTS, "output_dtype": "ubinary"}).json()
    assert raw["data"][0]["embedding"] == [int(x) for x in ubinary[0]]  # lists without encoding_format
    assert raw["usage"] == {"total_tokens": raw["usage"]["total_tokens"]} and raw["model"] == MINILM


def test_rerank_top_k(vo, proto_server):
    r = vo.rerank("kittens", DOCS, model=CE, top_k=2)
    ref = jina_scores(proto_server, CE, "kittens", DOCS)
    assert [x.index for x in r.results] == sorted(ref, key=lambda i: -ref[i])[:2]
    assert all(abs(x.relevance_score - ref[x.index]) < 1e-6 and x.document == DOCS[x.index] for x in r.results)
    assert r.total_tokens > 0
    raw = post(proto_server, "/v1/rerank", {"query": "kittens", "documents": DOCS, "model": CE, "top_k": None,
                                            "truncation": True, "return_documents": True}).json()
    assert raw["object"] == "list" and len(raw["data"]) == 3 and raw["data"][0]["document"] in DOCS


def test_errors_in_voyage_shape(vo, proto_server):
    with pytest.raises(voyageai.error.InvalidRequestError, match=r"voyage-3\.5"):
        vo.embed(["x"], model="voyage-3.5")
    with pytest.raises(voyageai.error.InvalidRequestError, match="longer than"):
        vo.embed(["word " * 400], model=MINILM, truncation=False)
    with pytest.raises(voyageai.error.InvalidRequestError):
        vo.rerank("q", [], model=CE)
    with pytest.raises(voyageai.error.AuthenticationError):
        voyageai.Client(api_key="wrong", base_url=proto_server.url + "/v1").embed(["x"], model=MINILM)
    r = post(proto_server, "/v1/embeddings", {"model": MINILM, "input": "x", "output_dtype": "int4"})
    assert r.status_code == 400 and list(r.json()) == ["detail"]
