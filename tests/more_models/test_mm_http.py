"""The new models over real HTTP (127.0.0.1), each served from a neutrally named folder (`--models /path`, no
`NAME=`): recognition, the embeddings / multi-vector / rerank bodies, image input forms, errors."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from helpers import RunningServer
from jinaserve.jobs import EmbedInput, EmbedOptions
from jinaserve.models.detect import UnrecognisedCheckpointError
from jinaserve.models.resolve import resolve

H = {"Authorization": "Bearer x"}


@pytest.fixture(scope="module")
def client(server: RunningServer):
    with server.client() as c:
        yield c


def post(client, path: str, body: dict, status: int = 200) -> dict:
    r = client.post(path, json=body, headers=H)
    assert r.status_code == status, r.text
    return r.json()


def png_b64(seed: int, size=(40, 30)) -> str:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(("name", "row", "family"), [
    ("ckpt-a", "jina-clip-v1", "jina_clip"), ("ckpt-b", "jina-clip-v2", "jina_clip"),
    ("ckpt-c", "jina-colbert-v1-en", "jina_colbert"), ("ckpt-d", "jina-colbert-v2", "jina_colbert"),
    ("ckpt-e", "jina-reranker-v1-base-en", "jina_reranker_v1")])
def test_recognised_from_a_neutral_folder(name, row, family, mm_root, client):
    from jinaserve.catalog import lookup

    spec = resolve(str(mm_root / name)).spec
    facts = lookup(row)
    assert (spec.id, spec.family, spec.licence, spec.hf_repo) == (name, family, facts.licence, facts.hf_repo)
    assert spec.extra == facts.extra
    card = client.get(f"/v1/models/{name}", headers=H).json()
    assert card["family"] == family


def test_unknown_clip_text_backbone_is_not_taken_for_jina_clip(tmp_path, clip_v1):
    import json
    import shutil

    folder = shutil.copytree(clip_v1.folder, tmp_path / "other")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"]["hf_model_name_or_path"] = "someone/other-bert"
    (folder / "config.json").write_text(json.dumps(cfg))
    # a JinaCLIPModel whose text tower is neither published one is a Jina folder no row matches: a loud error
    # that says what was found and how to name it, never a generic loader
    with pytest.raises(UnrecognisedCheckpointError, match="NAME=") as err:
        resolve(str(folder))
    assert "JinaCLIPModel" in str(err.value)


def test_clip_every_v4_input_form_gives_the_same_vector(client, services):
    b64 = png_b64(1)
    forms = [f"data:image/png;base64,{b64}", {"image": b64}, {"image": f"data:image/png;base64,{b64}"},
             {"url": f"data:image/png;base64,{b64}"}, {"bytes": b64}]
    body = post(client, "/v1/embeddings", {"model": "ckpt-b", "input": ["a photo", *forms]})
    assert list(body) == ["model", "object", "usage", "data"]
    vecs = np.array([d["embedding"] for d in body["data"]])
    assert vecs.shape == (6, 128)
    for v in vecs[2:]:
        np.testing.assert_allclose(v, vecs[1], atol=1e-6)
    local = services["clip_v2"].embed_sync([EmbedInput(text="a photo")], EmbedOptions()).vectors[0]
    np.testing.assert_allclose(vecs[0], local, atol=1e-5)
    # 1 + (32/8)² vision tokens per image, plus the text's tokens
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] > 5 * 17


def test_clip_v2_task_and_matryoshka_and_v1_ignores_them(client):
    q = post(client, "/v1/embeddings", {"model": "ckpt-b", "input": ["a photo"], "task": "retrieval.query",
                                        "dimensions": 64})
    assert len(q["data"][0]["embedding"]) == 64
    assert abs(np.linalg.norm(q["data"][0]["embedding"]) - 1) < 1e-5
    bad = post(client, "/v1/embeddings", {"model": "ckpt-b", "input": ["x"], "task": "retrieval.passage"}, 422)
    assert "retrieval.query" in bad["detail"]
    v1 = post(client, "/v1/embeddings", {"model": "ckpt-a", "input": ["a photo"], "dimensions": 16})
    assert len(v1["data"][0]["embedding"]) == 128


def test_clip_rerank_ranks_text_and_image_documents(client):
    image_doc = png_b64(2)
    body = post(client, "/v1/rerank", {"model": "ckpt-b", "query": "a photo",
                                       "documents": ["a photo", {"image": image_doc}, "tax law"]})
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert {r["index"] for r in body["results"]} == {0, 1, 2}
    image = next(r for r in body["results"] if r["index"] == 1)
    assert image["document"] == {"image": image_doc}


def test_clip_bad_image_is_a_400(client):
    body = post(client, "/v1/embeddings", {"model": "ckpt-a", "input": [{"image": "bm90IGFuIGltYWdl"}]}, 400)
    assert "index 0" in body["detail"]


def test_colbert_multivector_on_embeddings(client):
    doc = post(client, "/v1/embeddings", {"model": "ckpt-c", "input": ["Hello, world!", "cats and dogs"]})
    assert [d["object"] for d in doc["data"]] == ["embeddings", "embeddings"]
    assert list(doc["data"][0]) == ["object", "index", "embeddings"]
    first = np.array(doc["data"][0]["embeddings"])
    assert first.shape[1] == 128 and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    q = post(client, "/v1/embeddings", {"model": "ckpt-c", "input": "what is a cat?", "input_type": "query"})
    assert np.array(q["data"][0]["embeddings"]).shape == (32, 128)
    assert doc["usage"]["total_tokens"] > 0
    # the legacy endpoint: same vectors; base64 rows; jina-colbert-v2 dimensions 64/96/128
    legacy = post(client, "/v1/multi-vector", {"model": "ckpt-c", "input": ["Hello, world!"]})
    np.testing.assert_allclose(np.array(legacy["data"][0]["embeddings"]), first, atol=1e-6)
    b64 = post(client, "/v1/embeddings", {"model": "ckpt-d", "input": ["hello"], "embedding_type": "base64",
                                          "dimensions": 96})
    rows = [np.frombuffer(base64.b64decode(r), dtype="<f4") for r in b64["data"][0]["embeddings"]]
    assert all(r.shape == (96,) for r in rows)
    legacy_dims = post(client, "/v1/multi-vector", {"model": "ckpt-d", "input": "hello", "dimensions": 64})
    assert np.array(legacy_dims["data"][0]["embeddings"]).shape[1] == 64
    tokens = post(client, "/v1/embeddings", {"model": "ckpt-c", "input": "cats", "return_multivector": True,
                                             "return_tokenized_input": True})
    assert tokens["data"][0]["tokenized_input"] == ["[CLS]", "[unused1]", "cats", "[SEP]"]


def test_colbert_rejections(client):
    post(client, "/v1/embeddings", {"model": "ckpt-d", "input": ["x"], "dimensions": 100}, 422)
    post(client, "/v1/embeddings", {"model": "ckpt-c", "input": [{"image": png_b64(3)}]}, 422)
    post(client, "/v1/rerank", {"model": "ckpt-c", "query": "q", "documents": [{"image": png_b64(3)}]}, 400)


def test_colbert_and_reranker_v1_rerank(client):
    docs = ["cats eat fish", "stock markets fell", "kittens drink milk"]
    for model, lo, hi in (("ckpt-c", -32, 32), ("ckpt-d", -32, 32), ("ckpt-e", 0, 1)):
        body = post(client, "/v1/rerank", {"model": model, "query": "what do cats eat?", "documents": docs,
                                           "top_n": 2})
        assert list(body) == ["model", "object", "usage", "results"] and len(body["results"]) == 2
        scores = [r["relevance_score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True) and all(lo <= s <= hi for s in scores)
        assert body["results"][0]["document"] == {"text": docs[body["results"][0]["index"]]}


def test_one_vector_endpoints_refuse_colbert_and_take_clip_images(client):
    """Features that need one vector per input refuse a multi-vector model up front (never a 500); the CLIP
    image tower serves them like v4 does."""
    for path, body in [("/v1/classify", {"model": "ckpt-d", "input": ["hello"], "labels": ["a", "b"]}),
                       ("/v1/train", {"model": "ckpt-c", "input": [{"text": "a", "label": "x"},
                                                                   {"text": "b", "label": "y"}]})]:
        err = post(client, path, body, 422)
        assert "multi-vector" in err["detail"] and err["errors"][0]["field"] == "body -> model"
    cohere = post(client, "/v2/embed", {"model": "ckpt-d", "texts": ["hello"], "input_type": "search_query",
                                        "embedding_types": ["float"]}, 400)
    assert "several vectors per input" in cohere["message"]
    assert "several vectors per input" in post(client, "/api/embed", {"model": "ckpt-c", "input": "hi"}, 400)["error"]
    red = png_b64(3)
    out = post(client, "/v1/classify", {"model": "ckpt-b", "input": [{"image": red}, "a text"],
                                        "labels": ["red", "blue"]})
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(abs(sum(p["score"] for p in d["predictions"]) - 1) < 1e-6 for d in out["data"])
