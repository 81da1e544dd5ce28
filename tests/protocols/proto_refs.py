"""Shared by the protocol tests: names, the API key, a test image, and the reference path (the same
server's Jina endpoints), which every protocol must match."""

from __future__ import annotations

import base64

import httpx
import numpy as np

from helpers import RunningServer
from v4.tiny_v4 import make_png

KEY = "proto-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MINILM, V5, V4, CE = "all-MiniLM-L6-v2", "jina-embeddings-v5-text-small", "jina-embeddings-v4", "tiny-ce"
PNG_URI = "data:image/png;base64," + base64.b64encode(make_png(size=(40, 30), color=(10, 120, 200))).decode()


def jina_vectors(srv: RunningServer, model: str, inputs: list, **fields) -> np.ndarray:
    """The reference path: the Jina `/v1/embeddings` endpoint of the same server."""
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": model, "input": inputs, **fields}, headers=AUTH,
                   timeout=60)
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def jina_scores(srv: RunningServer, model: str, query: str, docs: list[str]) -> dict[int, float]:
    r = httpx.post(srv.url + "/v1/rerank", json={"model": model, "query": query, "documents": docs}, headers=AUTH,
                   timeout=60)
    assert r.status_code == 200, r.text
    return {x["index"]: x["relevance_score"] for x in r.json()["results"]}


def post(srv: RunningServer, path: str, body, **kw) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, headers=kw.pop("headers", AUTH), timeout=60, **kw)
