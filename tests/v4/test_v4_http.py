"""jina-embeddings-v4 over HTTP: text, images in every client form, multi-vectors, the legacy
/v1/multi-vector alias, and every bad-image path answered with a clear 400 while the server keeps serving."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from tiny_v4 import JPEG, PNG, PNG2, make_png

from helpers import server_in_thread
from jinaserve.jobs import EmbedInput, EmbedOptions

B64 = base64.b64encode(PNG).decode()
MODEL = "jina-embeddings-v4"


@pytest.fixture(scope="module")
def srv(tiny_v4_path):
    with server_in_thread(models=[f"{MODEL}={tiny_v4_path}"], device="cpu") as s:
        yield s


@pytest.fixture(scope="module")
def open_srv(tiny_v4_path):
    """SSRF guard configured to allow loopback, short fetch limits (for the local slow server)."""
    with server_in_thread(models=[f"{MODEL}={tiny_v4_path}"], device="cpu", image_allow_private_urls=True,
                          image_fetch_timeout_s=1.5, image_read_timeout_s=1.0) as s:
        yield s


def _post(s, body, path="/v1/embeddings"):
    return httpx.post(s.url + path, json={"model": MODEL, **body}, timeout=60)


def _vecs(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]])


def test_text_and_image_forms(srv, v4_embedder):
    r = _post(srv, {"task": "retrieval.passage",
                    "input": ["hello", {"text": "hello"}, {"image": B64}, {"bytes": B64},
                              f"data:image/png;base64,{B64}", {"image": f"data:image/png;base64,{B64}"}]})
    body = r.json()
    v = _vecs(r)
    assert v.shape == (6, 64) and [d["index"] for d in body["data"]] == list(range(6))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(v[1], v[0], atol=1e-6)
    for i in (3, 4, 5):
        np.testing.assert_allclose(v[i], v[2], atol=1e-6)
    np.testing.assert_allclose(v[0], v4_embedder.encode_text("hello", task="retrieval.passage"), atol=1e-5)
    np.testing.assert_allclose(v[2], v4_embedder.encode_image(PNG, task="retrieval.passage"), atol=1e-5)
    family = v4_embedder._service.family
    text_tokens = len(family.tokenizer("Passage: hello", add_special_tokens=False)["input_ids"])
    img_tokens = len(family.plan_embed([EmbedInput(image=PNG)], EmbedOptions()).items[0].payload.ids)
    assert body["usage"]["total_tokens"] == 2 * text_tokens + 4 * img_tokens


def test_dimensions_and_embedding_types(srv):
    full = _vecs(_post(srv, {"input": [{"image": B64}], "normalized": False}))
    cut = _vecs(_post(srv, {"input": [{"image": B64}], "dimensions": 10}))
    assert cut.shape == (1, 10)
    np.testing.assert_allclose(cut[0], full[0, :10] / np.linalg.norm(full[0, :10]), atol=1e-5)
    r = _post(srv, {"input": ["x"], "dimensions": 65})  # the tiny model is 64-d (the real one 2048)
    assert r.status_code == 422 and "less than or equal to 64" in r.json()["detail"]
    r = _post(srv, {"input": ["x", {"image": B64}], "embedding_type": "base64", "dimensions": 16})
    assert r.status_code == 200
    dec = np.frombuffer(base64.b64decode(r.json()["data"][1]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(dec, full[0, :16] / np.linalg.norm(full[0, :16]), atol=1e-5)


def test_multivector_on_embeddings_and_legacy_alias(srv):
    r = _post(srv, {"input": ["a cat sits on a mat", {"image": B64}], "return_multivector": True,
                    "task": "retrieval.query"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["object"] for d in data] == ["embeddings", "embeddings"] and "embedding" not in data[0]
    for d in data:
        m = np.array(d["embeddings"])
        assert m.ndim == 2 and m.shape[1] == 128 and m.shape[0] > 3
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1, atol=1e-5)
    # the legacy endpoint: input_type query → retrieval.query; default document → retrieval.passage
    q = _post(srv, {"input": ["a cat sits on a mat"], "input_type": "query"}, "/v1/multi-vector")
    np.testing.assert_allclose(np.array(q.json()["data"][0]["embeddings"]), np.array(data[0]["embeddings"]),
                               atol=1e-6)
    d1 = _post(srv, {"input": "a cat sits on a mat"}, "/v1/multi-vector").json()["data"][0]["embeddings"]
    d2 = _post(srv, {"input": ["a cat sits on a mat"], "return_multivector": True,
                     "task": "retrieval.passage"}).json()["data"][0]["embeddings"]
    np.testing.assert_allclose(np.array(d1), np.array(d2), atol=1e-6)
    assert not np.allclose(np.array(d1), np.array(data[0]["embeddings"]), atol=1e-3)
    img_alias = _post(srv, {"input": [{"image": B64}]}, "/v1/multi-vector")
    assert img_alias.status_code == 200, img_alias.text
    img = _post(srv, {"input": [{"image": B64}], "return_multivector": True, "task": "retrieval.passage"})
    np.testing.assert_allclose(np.array(img_alias.json()["data"][0]["embeddings"]),
                               np.array(img.json()["data"][0]["embeddings"]), atol=1e-6)
    r = _post(srv, {"input": ["x"], "return_multivector": True, "dimensions": 64})
    assert r.status_code == 422 and "return_multivector" in r.json()["detail"]
    assert _post(srv, {"input": ["x"], "dimensions": 64}, "/v1/multi-vector").status_code == 422


BAD = [
    ({"image": "%%% not base64 %%%"}, "not a valid image source"),
    ({"image": base64.b64encode(b"plain text, not an image").decode()}, "not a decodable image"),
    ({"bytes": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 50).decode()}, "not a decodable|corrupt"),
    ("data:image/png;base64," + "A" * (8 * 1024 * 1024 // 3 * 4 + 400), "limit"),
    ({"image": "http://127.0.0.1:9/img.png"}, "loopback address"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "link-local address"),
    ({"image": "http://10.0.0.1/x.png"}, "private address"),
    ({"image": "file:///etc/hosts"}, "scheme 'file'"),
    ({"image": "/etc/hosts"}, "local file paths are read only by the in-process API"),
    ({"image": base64.b64encode(make_png(size=(3000, 10))).decode()}, "cannot be processed.*aspect ratio"),
]


@pytest.mark.parametrize(("item", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_images_are_400_naming_the_index(srv, item, message):
    r = _post(srv, {"input": ["fine text", item]})
    assert r.status_code == (413 if message == "limit" else 400), r.text  # size limits: 413 naming the setting
    body = r.json()
    assert "index 1" in body["detail"] and re.search(message, body["detail"]), body["detail"]
    assert body["error"]["type"] == "invalid_request_error"
    assert _vecs(_post(srv, {"input": ["still serving", {"image": B64}]})).shape == (2, 64)


def test_url_fetch_timeout_and_success_with_loopback_allowed(open_srv, image_http, v4_embedder):
    r = _post(open_srv, {"input": [{"image": f"{image_http}/img.png"}, {"url": f"{image_http}/img.jpg"},
                                   f"data:image/png;base64,{B64}"], "task": "retrieval.passage"})
    v = _vecs(r)
    np.testing.assert_allclose(v[0], v[2], atol=1e-6)
    np.testing.assert_allclose(v[1], v4_embedder.encode_image(JPEG, task="retrieval.passage"), atol=1e-5)
    for path, message in (("/slow", "took longer than 1.5 s"), ("/stall", "timed out"),
                          ("/page.html", "text/html"), ("/missing.png", "HTTP 404")):
        r = _post(open_srv, {"input": ["x", "y", {"image": image_http + path}]})
        assert r.status_code == 400 and "index 2" in r.json()["detail"] and message in r.json()["detail"], r.text
    assert _vecs(_post(open_srv, {"input": [{"image": f"{image_http}/redirect"}]})).shape == (1, 64)


def test_concurrent_mixed_requests_equal_single_requests(srv):
    items = ["short", {"image": B64}, "a somewhat longer text input for the batcher",
             {"image": base64.b64encode(PNG2).decode()}, {"image": base64.b64encode(JPEG).decode()}, "x"]
    singles = [_vecs(_post(srv, {"input": [it], "task": "retrieval.passage"}))[0] for it in items]
    bodies = [{"input": [items[j % len(items)] for j in range(i, i + 4)], "task": "retrieval.passage"}
              for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: _vecs(_post(srv, b)), bodies))
    for i, got in enumerate(results):
        want = np.stack([singles[j % len(items)] for j in range(i, i + 4)])
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_rerank_by_cosine_over_text_and_image_documents(srv):
    docs = ["a red square", {"image": B64}, {"text": "green stripes"}]
    r = httpx.post(srv.url + "/v1/rerank", json={"model": MODEL, "query": "red", "documents": docs}, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    q = _vecs(_post(srv, {"input": ["red"], "task": "retrieval.query"}))[0]
    d = _vecs(_post(srv, {"input": docs, "task": "retrieval.passage"}))
    want = d @ q
    assert [x["index"] for x in results] == list(np.argsort(-want))
    np.testing.assert_allclose([x["relevance_score"] for x in results], np.sort(want)[::-1], atol=1e-5)
    assert results[[x["index"] for x in results].index(1)]["document"] == {"image": B64}


def test_late_chunking_text_only(srv, v4_embedder):
    texts = ["a cat sits on a mat.", "the quick brown fox", "jumps over the lazy dog"]
    r = _post(srv, {"input": texts, "task": "retrieval.passage", "late_chunking": True, "dimensions": 32})
    want = v4_embedder.encode_text(texts, task="retrieval.passage", late_chunking=True, dimensions=32)
    np.testing.assert_allclose(_vecs(r), want, atol=1e-5)
    r = _post(srv, {"input": ["text", {"image": B64}], "late_chunking": True})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body -> input -> 1", r.text


def test_return_tokenized_input(srv, v4_embedder):
    """`return_tokenized_input` (with `return_multivector`): each item carries the token string behind each of
    its vectors — for text the prefixed prompt's tokens, for an image the whole image prompt's."""
    tok = v4_embedder._service.family.tokenizer
    r = _post(srv, {"input": ["a cat sits on a mat", {"image": B64}], "return_multivector": True,
                    "return_tokenized_input": True, "task": "retrieval.query"})
    assert r.status_code == 200, r.text
    text_item, image_item = r.json()["data"]
    expected = tok.convert_ids_to_tokens(tok("Query: a cat sits on a mat", add_special_tokens=False)["input_ids"])
    assert text_item["tokenized_input"] == expected
    assert len(text_item["embeddings"]) == len(expected)
    assert len(image_item["tokenized_input"]) == len(image_item["embeddings"])
    assert "<|image_pad|>" in image_item["tokenized_input"]
    # The vectors are the same as without the flag; the field is absent unless asked for.
    plain = _post(srv, {"input": ["a cat sits on a mat"], "return_multivector": True, "task": "retrieval.query"})
    assert "tokenized_input" not in plain.json()["data"][0]
    np.testing.assert_allclose(np.array(plain.json()["data"][0]["embeddings"]),
                               np.array(text_item["embeddings"]), atol=1e-6)
    # The legacy endpoint takes it too; without multi-vectors it is a 422 naming the field.
    legacy = _post(srv, {"input": ["a cat sits on a mat"], "return_tokenized_input": True}, "/v1/multi-vector")
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["data"][0]["tokenized_input"] == tok.convert_ids_to_tokens(
        tok("Passage: a cat sits on a mat", add_special_tokens=False)["input_ids"])  # input_type document
    bad = _post(srv, {"input": ["x"], "return_tokenized_input": True})
    assert bad.status_code == 422 and "return_tokenized_input requires return_multivector" in bad.json()["detail"]
