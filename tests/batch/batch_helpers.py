"""Batch test helpers: reference vectors from /v1/embeddings (independent of the batch code) and waiting for a
job to finish."""

from __future__ import annotations

import time

import httpx
import numpy as np

FINAL = ("completed", "failed", "expired", "cancelled")


def direct_vectors(client: httpx.Client, model: str, texts: list[str], **options) -> np.ndarray:
    out = []
    for i in range(0, len(texts), 512):
        r = client.post("/v1/embeddings", json={"model": model, "input": texts[i:i + 512], **options})
        assert r.status_code == 200, r.text
        out += [d["embedding"] for d in r.json()["data"]]
    return np.array(out, dtype=np.float32)


def wait_job(client: httpx.Client, path: str, *, timeout: float = 120.0, key: str = "status") -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = client.get(path).json()
        if body[key] in FINAL:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"{path} not finished: {body}")
