"""Cohere over HTTP with the real `cohere` SDK (ClientV2 and the v1 Client), pointed at the server by
`base_url` alone: embeddings and scores equal the Jina endpoint's for the same model/task/dimensions, every
`embedding_types` value against a reference computed here, `input_type` → task, images, and Cohere's error
shape. Tolerances: float vectors 1e-6 (same model, same server), scores 1e-6."""

from __future__ import annotations

import base64

import cohere
import numpy as np
import pytest
from proto_refs import CE, KEY, MINILM, PNG_URI, V4, V5, jina_scores, jina_vectors, post

TEXTS = ["Berlin is the capital of Germany.", "The quick brown fox jumps over the lazy dog."]
DOCS = ["cats purr and sleep", "the stock market fell", "a kitten chasing a ball of wool"]


@pytest.fixture(scope="module")
def co2(proto_server):
    return cohere.ClientV2(api_key=KEY, base_url=proto_server.url)


@pytest.fixture(scope="module")
def co1(proto_server):
    return cohere.Client(api_key=KEY, base_url=proto_server.url)


def test_v2_embed_float_equals_jina(co2, proto_server):
    r = co2.embed(model=MINILM, texts=TEXTS, input_type="search_document", embedding_types=["float"])
    np.testing.assert_allclose(np.array(r.embeddings.float_), jina_vectors(proto_server, MINILM, TEXTS), atol=1e-6)
    assert r.texts == TEXTS and r.id and r.meta.api_version.version == "2"
    assert r.meta.billed_units.input_tokens > 0


def test_v2_every_embedding_type_against_reference(co2):
    types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    r = co2.embed(model=MINILM, texts=TEXTS, input_type="search_query", embedding_types=types)
    e = r.embeddings
    f = np.array(e.float_, dtype=np.float64)
    for i, v in enumerate(f):
        # reference quantisation, written out here: symmetric per-vector scale to ±127, uint8 = int8 + 128,
        # bits = sign > 0 packed most significant bit first, binary = ubinary - 128
        int8_ref = np.clip(np.rint(v * (127.0 / np.abs(v).max())), -127, 127)
        got = np.array(e.int8[i])
        assert got.dtype.kind == "i" and got.shape == v.shape
        assert np.abs(got - int8_ref).max() <= 1  # float32 vs float64 rounding at exact .5 ties
        assert np.mean(got == int8_ref) > 0.99
        np.testing.assert_array_equal(np.array(e.uint8[i]), got + 128)
        bits = (v > 0).astype(np.uint8)
        ubinary_ref = [int("".join(map(str, bits[k:k + 8])), 2) for k in range(0, len(bits), 8)]
        assert e.ubinary[i] == ubinary_ref and len(ubinary_ref) == len(v) // 8
        assert e.binary[i] == [b - 128 for b in ubinary_ref]
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(e.base64[i]), "<f4"), v, atol=1e-7)
        cos = got @ v / (np.linalg.norm(got) * np.linalg.norm(v))
        assert cos > 0.999


V5_TASKS = {"search_query": "retrieval.query", "search_document": "retrieval.passage",
            "classification": "classification", "clustering": "clustering", "image": "retrieval.passage"}


@pytest.mark.parametrize("input_type", list(V5_TASKS))
def test_v2_input_type_to_task_and_output_dimension(co2, proto_server, input_type):
    r = co2.embed(model=V5, texts=TEXTS, input_type=input_type, output_dimension=8, embedding_types=["float"])
    ref = jina_vectors(proto_server, V5, TEXTS, task=V5_TASKS[input_type], dimensions=8)
    np.testing.assert_allclose(np.array(r.embeddings.float_), ref, atol=1e-6)


def test_v2_input_type_without_matching_task_uses_the_default(co2, proto_server):
    # v4 has no classification / clustering task: the model's default task, as with no task at all
    default = jina_vectors(proto_server, V4, TEXTS)
    for input_type in ("classification", "clustering"):
        r = co2.embed(model=V4, texts=TEXTS, input_type=input_type, embedding_types=["float"])
        np.testing.assert_allclose(np.array(r.embeddings.float_), default, atol=1e-6)
    assert np.abs(default - jina_vectors(proto_server, V4, TEXTS, task="retrieval.query")).max() > 1e-4


def test_v2_images_and_inputs_through_the_jina_jobs(co2, proto_server):
    ref_img = jina_vectors(proto_server, V4, [{"image": PNG_URI}], task="retrieval.passage")
    r = co2.embed(model=V4, input_type="image", images=[PNG_URI], embedding_types=["float"])
    np.testing.assert_allclose(np.array(r.embeddings.float_), ref_img, atol=1e-6)
    assert r.meta.billed_units.images == 1
    inputs = [{"content": [{"type": "image_url", "image_url": {"url": PNG_URI}}]},
              {"content": [{"type": "text", "text": TEXTS[0]}]}]
    r = co2.embed(model=V4, input_type="search_document", inputs=inputs, embedding_types=["float"])
    ref = np.vstack([ref_img, jina_vectors(proto_server, V4, TEXTS[:1], task="retrieval.passage")])
    np.testing.assert_allclose(np.array(r.embeddings.float_), ref, atol=1e-6)


def test_v2_refusals_in_cohere_shape(co2, proto_server):
    with pytest.raises(cohere.BadRequestError) as e:
        co2.embed(model=MINILM, input_type="image", images=[PNG_URI])
    assert "text only" in e.value.body["message"] and e.value.body["id"]
    with pytest.raises(cohere.NotFoundError) as e:
        co2.embed(model="embed-v4.0", texts=["x"], input_type="search_query")
    assert "embed-v4.0" in e.value.body["message"]
    with pytest.raises(cohere.BadRequestError, match="START"):
        co2.embed(model=MINILM, texts=["x"], input_type="search_query", truncate="START")
    with pytest.raises(cohere.BadRequestError) as e:
        co2.embed(model=MINILM, texts=["word " * 400], input_type="search_query", truncate="NONE")
    assert e.value.body["message"].startswith("too many tokens:")
    long = co2.embed(model=MINILM, texts=["word " * 400], input_type="search_query", truncate="END")
    assert len(long.embeddings.float_[0]) == 384
    with pytest.raises(cohere.BadRequestError, match="max_tokens"):
        co2.embed(model=MINILM, texts=["x"], input_type="search_query", max_tokens=16)
    multi = [{"content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": PNG_URI}}]}]
    with pytest.raises(cohere.BadRequestError, match="content parts"):
        co2.embed(model=V4, input_type="search_document", inputs=multi)
    r = post(proto_server, "/v2/embed", {"model": MINILM, "texts": ["a"], "images": [PNG_URI]})
    assert r.status_code == 400 and "exactly one of" in r.json()["message"]
    bad_key = cohere.ClientV2(api_key="wrong", base_url=proto_server.url)
    with pytest.raises(cohere.UnauthorizedError) as e:
        bad_key.embed(model=MINILM, texts=["x"], input_type="search_query")
    assert set(e.value.body) == {"id", "message"}


def test_v2_rerank_equals_jina(co2, proto_server):
    r = co2.rerank(model=CE, query="kittens", documents=DOCS, top_n=2)
    ref = jina_scores(proto_server, CE, "kittens", DOCS)
    best = sorted(ref, key=lambda i: -ref[i])[:2]
    assert [x.index for x in r.results] == best
    for x in r.results:
        assert abs(x.relevance_score - ref[x.index]) < 1e-6
    assert r.meta.billed_units.search_units == 1 and r.id
    with pytest.raises(cohere.BadRequestError, match="must not be empty"):
        co2.rerank(model=CE, query="q", documents=[])


def test_v1_embed_floats_and_by_type(co1, proto_server):
    r = co1.embed(texts=TEXTS, model=V5, input_type="search_query")
    assert r.response_type == "embeddings_floats"
    ref = jina_vectors(proto_server, V5, TEXTS, task="retrieval.query")
    np.testing.assert_allclose(np.array(r.embeddings), ref, atol=1e-6)
    r = co1.embed(texts=TEXTS, model=V5, input_type="search_query", embedding_types=["float", "ubinary"])
    assert r.response_type == "embeddings_by_type"
    np.testing.assert_allclose(np.array(r.embeddings.float_), ref, atol=1e-6)
    assert r.embeddings.ubinary[0] == list(np.packbits(ref[0] > 0))


def test_v1_rerank_plain_and_rank_fields(co1, proto_server):
    # a plain body is answered by the Jina endpoint, which the v1 client reads
    r = co1.rerank(model=CE, query="kittens", documents=DOCS, top_n=3, return_documents=True)
    ref = jina_scores(proto_server, CE, "kittens", DOCS)
    assert [round(x.relevance_score, 6) for x in r.results] == [round(ref[x.index], 6) for x in r.results]
    assert all(x.document.text == DOCS[x.index] for x in r.results)
    # rank_fields: the Cohere v1 shape; each document is ranked as its fields, `key: value` per line
    docs = [{"title": "Cats", "text": DOCS[0], "id": 1}, {"title": "Markets", "text": DOCS[1], "id": 2}]
    r = co1.rerank(model=CE, query="kittens", documents=docs, rank_fields=["title", "text"], return_documents=True)
    flat = [f"title: {d['title']}\ntext: {d['text']}" for d in docs]
    ref = jina_scores(proto_server, CE, "kittens", flat)
    assert r.meta.api_version.version == "1"
    for x in r.results:
        assert abs(x.relevance_score - ref[x.index]) < 1e-6
        assert x.document.dict()["id"] == docs[x.index]["id"]
