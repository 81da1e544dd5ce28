"""Names and small HTTP helpers shared by the classification tests (references are computed here, with
numpy, from /v1/embeddings vectors: nothing is imported from jinaserve.classify)."""

from __future__ import annotations

import re

import httpx
import numpy as np

MINILM, V4, V5 = "all-MiniLM-L6-v2", "jina-embeddings-v4", "jina-embeddings-v5-text-small"


def post(srv, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(srv.url + path, json=body, timeout=120, **kw)


def classify(srv, body: dict, **kw) -> httpx.Response:
    return post(srv, "/v1/classify", body, **kw)


def train(srv, body: dict, **kw) -> httpx.Response:
    return post(srv, "/v1/train", body, **kw)


def embed(srv, model: str, inputs: list, task: str | None = None) -> tuple[np.ndarray, int]:
    r = post(srv, "/v1/embeddings", {"model": model, "input": inputs, **({"task": task} if task else {})})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float64), r.json()["usage"]["total_tokens"]


def scores_of(item: dict, group: str | None = None) -> tuple[list[str], np.ndarray]:
    preds = item["predictions"] if group is None else item["predictions"][group]
    return [p["label"] for p in preds], np.array([p["score"] for p in preds])


def metric(srv, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when the series does not exist yet)."""
    text = httpx.get(srv.url + "/metrics", timeout=30).text
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}{{(.*)}} ([0-9.e+-]+)$", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == labels:
            return float(m.group(2))
    return 0.0
