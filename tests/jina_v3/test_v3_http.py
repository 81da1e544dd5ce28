"""End to end over HTTP with the fields the hosted API accepts for jina-embeddings-v3, and the 422s."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from test_v3_late_chunking import CHUNKS, manual_late_chunking
from v3_builders import TASK_ORDER
from v3_reference import tokenizer

from helpers import server_in_thread
from jinaserve.outputs import decode_base64

MODEL = "jina-embeddings-v3"


@pytest.fixture(scope="module")
def srv(v3_hf):
    with server_in_thread(models=[f"{MODEL}={v3_hf.folder}"], threads=1) as server:
        yield server


def post(srv, **body) -> httpx.Response:
    return httpx.post(srv.url + "/v1/embeddings", json={"model": MODEL, **body}, timeout=60)


def vectors(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def test_task_dimensions_and_encodings(srv):
    texts = ["Organic skincare for sensitive skin", "hello"]
    full = vectors(post(srv, input=texts, task="retrieval.query", normalized=False))
    cut = vectors(post(srv, input=texts, task="retrieval.query", dimensions=16))
    np.testing.assert_allclose(cut, full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True), atol=1e-5)
    r = post(srv, input=texts, task="retrieval.query", dimensions=16, embedding_type="base64")
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.stack([decode_base64(d["embedding"]) for d in r.json()["data"]]), cut, atol=1e-6)
    r = post(srv, input=texts, task="retrieval.query", dimensions=16, embedding_type="binary")
    want = np.packbits(cut > 0, axis=1).astype(int) - 128
    np.testing.assert_array_equal(np.array([d["embedding"] for d in r.json()["data"]]), want)
    body = post(srv, input=texts, task="retrieval.query").json()
    assert list(body) == ["model", "object", "usage", "data"] and body["model"] == MODEL
    assert body["usage"]["total_tokens"] > 0


def test_each_task_and_no_task_differ(srv):
    got = {t: vectors(post(srv, input="text", task=t))[0] for t in [None, *TASK_ORDER]}
    keys = list(got)
    assert all(not np.allclose(got[a], got[b], atol=1e-3) for i, a in enumerate(keys) for b in keys[i + 1:])


def test_late_chunking_over_http(v3_hf, srv):
    want, n_tokens = manual_late_chunking(v3_hf, "retrieval.passage", CHUNKS)
    r = post(srv, input=CHUNKS, task="retrieval.passage", late_chunking=True, dimensions=32)
    np.testing.assert_allclose(vectors(r), want, atol=2e-5)
    assert r.json()["usage"]["total_tokens"] == n_tokens
    assert [d["index"] for d in r.json()["data"]] == [0, 1, 2]


def test_truncate_field(v3_hf, srv):
    long = " ".join(["Berlin is the capital of Germany."] * 40)
    assert len(tokenizer(str(v3_hf.folder))(long)["input_ids"]) > 128
    r = post(srv, input=[long], task="text-matching")
    assert r.status_code == 400 and r.json()["code"] == "INPUT_TOKEN_LIMIT_EXCEEDED"
    r = post(srv, input=[long, "short"], task="text-matching", truncate=True)
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] <= 128 + 10
    r = post(srv, input=[long, long], task="text-matching", late_chunking=True)
    assert r.status_code == 400 and r.json()["code"] == "INPUT_TOKEN_LIMIT_EXCEEDED"
    assert len(vectors(post(srv, input=[long, long], task="text-matching", late_chunking=True, truncate=True))) == 2


@pytest.mark.parametrize("body, field", [
    ({"task": "nl2code.query"}, "body -> task"),
    ({"task": "retrieval.query", "dimensions": 33}, "body -> dimensions"),
    ({"dimensions": 0}, "body -> dimensions"),
    ({"return_multivector": True}, "body -> return_multivector"),
    ({"input": [{"text": "a"}, {"image": "https://example.com/cat.png"}]}, "body -> input -> 1"),
])
def test_unsupported_values_are_422(srv, body, field):
    r = post(srv, **{"input": ["x"], **body})
    assert r.status_code == 422, r.text
    payload = r.json()
    assert isinstance(payload["detail"], str) and payload["errors"][0]["field"] == field
    if body.get("task") == "nl2code.query":
        assert all(t in payload["detail"] for t in TASK_ORDER)


def test_models_cli_lists_v3():
    from typer.testing import CliRunner

    from jinaserve.cli import app

    out = CliRunner().invoke(app, ["models", "--json"])
    assert out.exit_code == 0, out.output
    row = next(r for r in json.loads(out.output) if r["id"] == MODEL)
    assert row["tasks"] == TASK_ORDER and row["dimensions"] == 1024 and row["default_task"] is None
    assert row["max_tokens"] == 8192 and row["licence"] == "CC-BY-NC-4.0"
