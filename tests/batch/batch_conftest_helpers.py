"""Reference vectors for batch tests: the same texts sent to /v1/embeddings directly (independent of the
batch code)."""

from __future__ import annotations

import httpx
import numpy as np


def direct_vectors(client: httpx.Client, model: str, texts: list[str], **options) -> np.ndarray:
    out = []
    for i in range(0, len(texts), 512):
        r = client.post("/v1/embeddings", json={"model": model, "input": texts[i:i + 512], **options})
        assert r.status_code == 200, r.text
        out += [d["embedding"] for d in r.json()["data"]]
    return np.array(out, dtype=np.float32)
