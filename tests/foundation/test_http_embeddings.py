"""POST /v1/embeddings over real HTTP: every field, alias, input form and output encoding."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from transformers import AutoTokenizer

from helpers import minilm_dir

MINILM = "all-MiniLM-L6-v2"
TEXTS = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog.", "Hello"]


def embed(srv, **body) -> httpx.Response:
    return httpx.post(srv.url + "/v1/embeddings", json=body, timeout=60)


def vectors(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)


@pytest.fixture(scope="module")
def float_ref(main_server) -> np.ndarray:
    return vectors(embed(main_server, model=MINILM, input=TEXTS))


@pytest.fixture(scope="module")
def raw_ref(main_server) -> np.ndarray:
    """Un-normalised full vectors, for checking dimensions-then-normalise."""
    return vectors(embed(main_server, model=MINILM, input=TEXTS, normalized=False))


def test_response_shape_and_real_token_counts(main_server):
    r = embed(main_server, model=MINILM, input=TEXTS)
    body = r.json()
    assert r.headers["content-type"].startswith("application/json")
    assert list(body) == ["model", "object", "usage", "data"]
    assert body["model"] == MINILM and body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and list(d) == ["object", "index", "embedding"] for d in body["data"])
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    expected = sum(len(tok(t)["input_ids"]) for t in TEXTS)  # incl. [CLS]/[SEP], as the model sees them
    assert body["usage"] == {"total_tokens": expected, "prompt_tokens": expected}
    vecs = vectors(r)
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_input_forms_give_the_same_vectors(main_server, float_ref):
    single = vectors(embed(main_server, model=MINILM, input=TEXTS[0]))
    assert single.shape == (1, 384)
    np.testing.assert_allclose(single[0], float_ref[0], atol=1e-5)
    objs = vectors(embed(main_server, model=MINILM, input=[{"text": t} for t in TEXTS]))
    np.testing.assert_allclose(objs, float_ref, atol=1e-5)
    one_obj = vectors(embed(main_server, model=MINILM, input={"text": TEXTS[1]}))
    np.testing.assert_allclose(one_obj[0], float_ref[1], atol=1e-5)
    # alias spellings of `input`
    for alias in ("content", "texts"):
        np.testing.assert_allclose(vectors(embed(main_server, model=MINILM, **{alias: TEXTS})), float_ref, atol=1e-5)


def test_token_id_inputs_refused_by_default(main_server):
    """Token ids are refused unless the operator allows them (allow_token_ids; accepted ids are tested in
    tests/ops/test_token_ids.py): 422 naming the client fix."""
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    ids = [tok(t)["input_ids"] for t in TEXTS]
    for value in (ids, ids[0]):  # a list of token-id arrays, and one flat array
        r = embed(main_server, model=MINILM, input=value)
        assert r.status_code == 422, r.text
        assert "check_embedding_ctx_length=False" in r.json()["detail"]


def test_null_means_absent_and_unknown_fields_ignored(main_server, float_ref):
    r = embed(main_server, model=MINILM, input=TEXTS, task=None, dimensions=None, normalized=None,
              embedding_type=None, encoding_format=None, truncate=None, late_chunking=None,
              some_future_field={"x": 1}, user="someone")
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


def test_model_null_uses_first_embedding_model(main_server, float_ref):
    r = embed(main_server, model=None, input=TEXTS)
    assert r.json()["model"] == MINILM
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


def test_model_by_hf_repo_id(main_server, float_ref):
    r = embed(main_server, model="sentence-transformers/all-MiniLM-L6-v2", input=TEXTS)
    assert r.json()["model"] == MINILM
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


@pytest.mark.parametrize("field", ["embedding_type", "encoding_format", "encoding_type", "embedding_types"])
def test_base64_decodes_to_float(main_server, float_ref, field):
    value = ["base64"] if field == "embedding_types" else "base64"
    r = embed(main_server, model=MINILM, input=TEXTS, **{field: value})
    assert r.status_code == 200, r.text
    for d, ref in zip(r.json()["data"], float_ref, strict=True):
        assert isinstance(d["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, ref)  # bit-exact: same forward pass, same float32


@pytest.mark.parametrize("field", ["embedding_type", "encoding_type", "encoding_format", "embedding_types"])
def test_binary_and_ubinary_are_packbits(main_server, float_ref, field):
    packed = np.packbits(float_ref > 0, axis=1)

    def value(v: str) -> str | list[str]:
        return [v] if field == "embedding_types" else v

    u = embed(main_server, model=MINILM, input=TEXTS, **{field: value("ubinary")}).json()
    b = embed(main_server, model=MINILM, input=TEXTS, **{field: value("binary")}).json()
    u_arr = np.array([d["embedding"] for d in u["data"]])
    b_arr = np.array([d["embedding"] for d in b["data"]])
    assert u_arr.shape == (3, 384 // 8)
    np.testing.assert_array_equal(u_arr, packed.astype(np.int64))
    np.testing.assert_array_equal(b_arr, packed.astype(np.int64) - 128)
    assert u_arr.min() >= 0 and u_arr.max() <= 255 and b_arr.min() >= -128 and b_arr.max() <= 127


def test_embedding_type_wins_over_encoding_format(main_server, float_ref):
    r = embed(main_server, model=MINILM, input=TEXTS, embedding_type="float", encoding_format="base64")
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)
    r = embed(main_server, model=MINILM, input=TEXTS, encoding_format="float", encoding_type="base64")
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


@pytest.mark.parametrize("alias", ["dimensions", "output_dimensionality", "output_dimension"])
def test_dimensions_truncate_then_normalise(main_server, raw_ref, alias):
    r = embed(main_server, model=MINILM, input=TEXTS, **{alias: 64})
    got = vectors(r)
    assert got.shape == (3, 64)
    cut = raw_ref[:, :64]
    expected = cut / np.linalg.norm(cut, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_normalized_false_and_dimensions(main_server, raw_ref, float_ref):
    assert not np.allclose(np.linalg.norm(raw_ref, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(raw_ref / np.linalg.norm(raw_ref, axis=1, keepdims=True), float_ref, atol=1e-5)
    got = vectors(embed(main_server, model=MINILM, input=TEXTS, dimensions=32, normalized=False))
    np.testing.assert_allclose(got, raw_ref[:, :32], atol=1e-5)


def test_truncate(main_server):
    long_text = "word " * 600  # > 256 tokens (MiniLM's max_seq_length)
    r = embed(main_server, model=MINILM, input=[long_text], truncate=False)
    assert r.status_code == 400
    assert r.json()["code"] == "INPUT_TOKEN_LIMIT_EXCEEDED"
    assert "256" in r.json()["detail"]
    ok = embed(main_server, model=MINILM, input=[long_text], truncate=True)
    assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] == 256
    alias = embed(main_server, model=MINILM, input=[long_text], truncation=True)
    assert alias.status_code == 200
    # default (absent) is truncate=false, as the hosted API
    assert embed(main_server, model=MINILM, input=[long_text]).status_code == 400


def test_task_ignored_for_model_without_tasks(main_server, float_ref):
    r = embed(main_server, model=MINILM, input=TEXTS, task="retrieval.query")
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


def test_unprefixed_path_and_curl_content_type(main_server, float_ref):
    r = httpx.post(main_server.url + "/embeddings", json={"model": MINILM, "input": TEXTS})
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)
    # curl -d sends application/x-www-form-urlencoded; the body is still JSON
    import orjson

    r = httpx.post(main_server.url + "/v1/embeddings", content=orjson.dumps({"model": MINILM, "input": TEXTS}),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    np.testing.assert_allclose(vectors(r), float_ref, atol=1e-6)


def test_request_id_header(main_server):
    r = httpx.post(main_server.url + "/v1/embeddings", json={"model": MINILM, "input": "x"},
                   headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = embed(main_server, model=MINILM, input="x")
    assert len(r.headers["x-request-id"]) == 32
