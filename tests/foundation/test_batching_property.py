"""Property: under concurrency, dynamic batching never mixes results. Many concurrent HTTP requests of
random sizes each get exactly the vectors their inputs get when sent alone (atol 1e-5: padding in a
shared batch only changes float summation order)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

WORDS = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "green", "quick", "seven", "moon",
         "tree", "blue", "house", "paper", "light", "ocean", "metal", "glass", "sand"]
# A fixed pool of texts of very different lengths (1 to ~60 tokens), so batches need padding.
POOL = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + (i * 11) % 57)) for i in range(24)]

request_st = st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=6)
batch_st = st.lists(request_st, min_size=2, max_size=12)


@pytest.fixture(scope="module")
def alone(main_server) -> np.ndarray:
    """Each pool text sent alone, one request at a time."""
    out = []
    for text in POOL:
        r = httpx.post(main_server.url + "/v1/embeddings", json={"model": "tiny", "input": [text]}, timeout=60)
        out.append(r.json()["data"][0]["embedding"])
    return np.array(out, dtype=np.float32)


async def fire(url: str, model: str, requests: list[list[str]]) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        responses = await asyncio.gather(*[client.post("/v1/embeddings", json={"model": model, "input": texts})
                                           for texts in requests])
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


def batch_count(url: str, model: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics").text
    vals = {}
    for suffix in ("count", "sum"):
        prefix = f'jinaserve_batch_size_{suffix}{{model="{model}"}}'
        vals[suffix] = next(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(prefix))
    return vals["count"], vals["sum"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=batch_st)
def test_concurrent_requests_get_their_own_vectors(main_server, alone, requests):
    url = main_server.url
    before = batch_count(url, "tiny")
    bodies = asyncio.run(fire(url, "tiny", [[POOL[i] for i in idx] for idx in requests]))
    after = batch_count(url, "tiny")
    assert after[1] - before[1] == sum(len(idx) for idx in requests)  # every item ran exactly once
    for idx, body in zip(requests, bodies, strict=True):
        assert [d["index"] for d in body["data"]] == list(range(len(idx)))
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, alone[idx], atol=1e-5)


def test_concurrent_requests_share_batches(main_server):
    """The premise of the property: concurrent requests really are batched together."""
    url = main_server.url
    requests = [[f"{WORDS[i]} {WORDS[(i * 7) % 20]}"] for i in range(20)]
    before = batch_count(url, "tiny")
    asyncio.run(fire(url, "tiny", requests))
    after = batch_count(url, "tiny")
    assert after[1] - before[1] == 20
    assert after[0] - before[0] < 20  # fewer forward passes than requests
