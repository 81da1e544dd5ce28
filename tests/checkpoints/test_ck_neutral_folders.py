"""Issue 12 item 1: every family is recognised from its own files, whatever the folder is called.

Each tiny checkpoint is served twice: as `ROW=folder` (the row chosen by name) and as a copy in a neutral
folder `my-model-<n>/` with no name. Both must give the same vectors / scores, to float32 round-off
(atol 1e-6): the neutral copy must be loaded by the same family, with the same tasks, prefixes, adapters,
pooling and windows. One model per family goes over HTTP (a real server on 127.0.0.1), the other
layouts in-process.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from PIL import Image

from helpers import server_in_thread
from jinaserve import Embedder, Reranker
from jinaserve.catalog import lookup

TEXTS = ["Berlin is the capital of Germany.", "def add(a, b): return a + b", "hello world"]
QUERY = "where is the capital"
# longer than reranker-v2's window: the sliding windows decide its score (a generic loader truncates)
_WORDS = ["the", "river", "banks", "under", "blue", "sky", "where", "birds", "sing", "loud", "songs", "about",
          "green", "trees", "in", "spring", "while", "people", "walk", "slowly", "past", "old", "houses", "near",
          "city", "music", "sport", "food", "travel", "answer", "question"]
LONG = " ".join(_WORDS[(i * 7 + i // 5) % len(_WORDS)] for i in range(600))
DOCS = [*TEXTS, LONG]
ATOL = 1e-6


def task_of(row_id: str) -> str | None:
    row = lookup(row_id)
    assert row is not None
    return row.tasks[0].name if row.tasks else None


@pytest.fixture(scope="module")
def srv(layouts):
    http = [c for c in layouts.values() if c.over_http]
    models = [str(c.neutral) for c in http] + [f"{c.row}={c.named}" for c in http]
    with server_in_thread(models=models, device="cpu", threads=1) as s:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every model loaded or failed (a failure is the test's answer)
            states = [m["state"] for m in httpx.get(s.url + "/readyz", timeout=5).json()["models"].values()]
            if "loading" not in states:
                break
            time.sleep(0.1)
        yield s


def test_one_model_per_family_goes_over_http(layouts):
    families = {lookup(c.row).family for c in layouts.values()}  # type: ignore[union-attr]
    over_http = {lookup(c.row).family for c in layouts.values() if c.over_http}  # type: ignore[union-attr]
    assert families == over_http


@pytest.mark.parametrize("case", ["minilm", "v3-hf", "v5-small", "code", "v2", "rr3", "rr2", "m0", "v4", "clip-v2",
                                  "colbert-v2", "rr1"])
def test_neutral_folder_over_http(srv, layouts, case):
    c = layouts[case]
    neutral_id = c.neutral.name
    if c.kind == "embedding":
        body = {"input": TEXTS, "task": task_of(c.row)}
        got = [httpx.post(srv.url + "/v1/embeddings", json={**body, "model": m}, timeout=60) for m in
               (neutral_id, c.row)]
        for r in got:
            assert r.status_code == 200, r.text
        # one vector per input, or one per token (multi-vector models: ColBERT)
        a, b = (np.concatenate([np.atleast_2d(d.get("embedding", d.get("embeddings"))) for d in r.json()["data"]])
                for r in got)
        np.testing.assert_allclose(a, b, atol=ATOL)
    else:
        body = {"query": QUERY, "documents": DOCS, "return_documents": False}
        got = [httpx.post(srv.url + "/v1/rerank", json={**body, "model": m}, timeout=60) for m in (neutral_id, c.row)]
        for r in got:
            assert r.status_code == 200, r.text
        a, b = ({x["index"]: x["relevance_score"] for x in r.json()["results"]} for r in got)
        assert a.keys() == b.keys() == set(range(len(DOCS)))
        np.testing.assert_allclose([a[i] for i in range(len(DOCS))], [b[i] for i in range(len(DOCS))], atol=ATOL)


@pytest.mark.parametrize("case", ["v3-remote", "v3-remote-xlmr", "v3-hf-noarch", "v5-nano", "v5-small-merged",
                                  "v5-nano-merged-st", "v2-code", "v4-vllm"])
def test_neutral_folder_in_process(layouts, case):
    c = layouts[case]
    task = task_of(c.row)
    with Embedder(str(c.neutral), device="cpu") as neutral, Embedder(f"{c.row}={c.named}", device="cpu") as named:
        assert neutral.spec.family == named.spec.family
        assert neutral.spec.task_names == named.spec.task_names
        a = neutral.encode(TEXTS, task=task)
        b = named.encode(TEXTS, task=task)
    np.testing.assert_allclose(a, b, atol=ATOL)


def test_reranker_neutral_in_process(layouts):
    """The in-process Reranker takes the same path as the server (one cross-check besides HTTP)."""
    c = layouts["rr2"]
    with Reranker(str(c.neutral), device="cpu") as neutral, Reranker(f"{c.row}={c.named}", device="cpu") as named:
        np.testing.assert_allclose(neutral.score(QUERY, DOCS), named.score(QUERY, DOCS), atol=ATOL)


@pytest.mark.parametrize("case", ["clip-v1", "colbert-v1"])
def test_neutral_folder_in_process_clip_and_colbert(layouts, case):
    """jina-clip v1 (text and an image) and jina-colbert v1 (per-token vectors) from a neutral folder."""
    c = layouts[case]
    with Embedder(str(c.neutral), device="cpu") as neutral, Embedder(f"{c.row}={c.named}", device="cpu") as named:
        assert (neutral.spec.hf_repo, neutral.spec.family) == (named.spec.hf_repo, named.spec.family)
        if neutral.spec.family == "jina_colbert":
            for a, b in zip(neutral.encode_multivector(TEXTS), named.encode_multivector(TEXTS), strict=True):
                np.testing.assert_allclose(a, b, atol=ATOL)
        else:
            image = Image.new("RGB", (48, 40), (200, 30, 90))
            np.testing.assert_allclose(neutral.encode(TEXTS), named.encode(TEXTS), atol=ATOL)
            np.testing.assert_allclose(neutral.encode_image([image]), named.encode_image([image]), atol=ATOL)


def test_reranker_v1_size_named_by_the_hf_cache_path(layouts):
    """The three reranker-v1 sizes have the same files; a snapshot in the HF cache is the size its repo id names
    (not the base row), and scores as the same checkpoint served by that name."""
    c = layouts["rr1-turbo-cache"]
    with Reranker(str(c.neutral), device="cpu") as cached, Reranker(f"{c.row}={layouts['rr1'].named}",
                                                                     device="cpu") as named:
        assert cached.spec.hf_repo == named.spec.hf_repo == "jinaai/jina-reranker-v1-turbo-en"
        np.testing.assert_allclose(cached.score(QUERY, DOCS), named.score(QUERY, DOCS), atol=ATOL)
