"""The new families through the other entry points: jina-clip images over Cohere, classification and batch
jobs; jina-colbert on the routes that carry one vector per input (refused in each protocol's shape, with a
message whose advice works), on TEI `/embed_all` and in the CLI (`jinaserve embed` prints its per-token
vectors; `jinaserve batch run`, whose output holds one vector per row, refuses it up front). References: the
same server's Jina `/v1/embeddings` and `/v1/multi-vector` answers, and plain numpy for the classification
scores."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from test_mm_http import png_b64
from typer.testing import CliRunner

from jinaserve.cli import app

CLIP, COLBERT = "ckpt-b", "ckpt-d"  # jina-clip-v2, jina-colbert-v2 (served by folder name)
TEXTS = ["a red square", "ein blaues Auto"]


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def jina(client, model: str, inputs: list, path: str = "/v1/embeddings", **fields) -> list[np.ndarray]:
    r = client.post(path, json={"model": model, "input": inputs, **fields})
    assert r.status_code == 200, r.text
    return [np.array(d.get("embedding", d.get("embeddings")), dtype=np.float32) for d in r.json()["data"]]


def test_clip_images_over_cohere_equal_the_jina_endpoint(client):
    uri = "data:image/png;base64," + png_b64(5)
    ref_image, ref_text = jina(client, CLIP, [{"image": uri}, TEXTS[0]])
    r = client.post("/v2/embed", json={"model": CLIP, "images": [uri], "input_type": "image",
                                       "embedding_types": ["float"]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embeddings"]["float"][0], ref_image, atol=1e-6)
    r = client.post("/v2/embed", json={"model": CLIP, "embedding_types": ["float"], "inputs": [
        {"content": [{"type": "image_url", "image_url": {"url": uri}}]},
        {"content": [{"type": "text", "text": TEXTS[0]}]}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embeddings"]["float"], [ref_image, ref_text], atol=1e-6)


def test_clip_classifies_an_image_against_text_labels(client):
    """Zero-shot: softmax over the cosines of the image vector and the label vectors (temperature 1, as
    docs/classify.md states), computed here from the Jina endpoint's vectors."""
    image, labels = png_b64(6), ["a photo of a cat", "a diagram", "noise"]
    r = client.post("/v1/classify", json={"model": CLIP, "input": [{"image": image}], "labels": labels})
    assert r.status_code == 200, r.text
    (img,) = jina(client, CLIP, [{"image": image}])
    lab = np.stack(jina(client, CLIP, labels))
    cos = lab @ img / (np.linalg.norm(lab, axis=1) * np.linalg.norm(img))
    want = np.exp(cos) / np.exp(cos).sum()
    got = {p["label"]: p["score"] for p in r.json()["data"][0]["predictions"]}
    np.testing.assert_allclose([got[x] for x in labels], want, atol=1e-5)


def test_clip_batch_job_with_an_image_line_equals_online(client):
    image = "data:image/png;base64," + png_b64(7)
    r = client.post("/v1/batch/embeddings", json={"model": CLIP, "input": [TEXTS[1], {"image": image}]})
    assert r.status_code == 200, r.text
    path, deadline = f"/v1/batch/{r.json()['batch_id']}", time.monotonic() + 60
    while (job := client.get(path).json())["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job["stats"] == {**job["stats"], "completed": 2, "failed": 0}, job
    lines = {x["custom_id"]: x for x in map(json.loads, client.get(path + "/output").text.splitlines())}
    got = [lines[k]["response"]["body"]["data"][0]["embedding"] for k in ("0", "1")]
    np.testing.assert_allclose(got, jina(client, CLIP, [TEXTS[1], {"image": image}]), atol=1e-6)


# (path, body, key of the error message, status) for every route that carries one vector per input
ONE_VECTOR_ROUTES = [("/v2/embed", {"model": COLBERT, "texts": TEXTS}, "message", 400),
                     ("/v1/embed", {"model": COLBERT, "texts": TEXTS}, "message", 400),
                     ("/api/embed", {"model": COLBERT, "input": TEXTS}, "error", 400),
                     ("/api/embeddings", {"model": COLBERT, "prompt": TEXTS[0]}, "error", 400),
                     (f"/tei/{COLBERT}/embed", {"inputs": TEXTS}, "error", 424),
                     ("/v1/embeddings", {"model": COLBERT, "input": TEXTS, "output_dtype": None}, "detail", 400)]


@pytest.mark.parametrize(("path", "body", "key", "status"), ONE_VECTOR_ROUTES)
def test_colbert_on_a_one_vector_route_is_refused_with_advice_that_works(client, path, body, key, status):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    message = r.json()[key]
    assert "several vectors per input" in message and "/v1/multi-vector" in message, message
    # the advice: the same texts on /v1/multi-vector (and TEI /embed_all) give the per-token vectors
    multi = jina(client, COLBERT, TEXTS, path="/v1/multi-vector", input_type="document")
    assert all(m.ndim == 2 and m.shape[1] == 128 for m in multi)
    r = client.post(f"/tei/{COLBERT}/embed_all", json={"inputs": TEXTS})
    assert r.status_code == 200, r.text
    for got, want in zip(r.json(), multi, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_cli_embed_prints_colbert_per_token_vectors(client, mm_root):
    r = CliRunner().invoke(app, ["embed", "-m", str(mm_root / COLBERT), "--offline", "--device", "cpu",
                                 "--task", "retrieval.query", *TEXTS])
    assert r.exit_code == 0, r.output
    got = [np.array(d["embeddings"]) for d in json.loads(r.stdout)["data"]]
    for a, b in zip(got, jina(client, COLBERT, TEXTS, task="retrieval.query"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_cli_batch_run_refuses_a_multi_vector_model_up_front(mm_root, tmp_path):
    (tmp_path / "in.txt").write_text("a\nb\n")
    r = CliRunner().invoke(app, ["batch", "run", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.npy"),
                                 "-m", str(mm_root / COLBERT), "--offline", "--device", "cpu",
                                 "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 2, (r.output, r.exception)  # the CLI's error exit, not a traceback
    assert "one vector per token" in r.output and "/v1/batch/embeddings" in r.output, r.output
    assert not (tmp_path / "o.npy").exists()
