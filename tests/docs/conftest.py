"""One real server for the documentation tests: the real all-MiniLM-L6-v2 (its bundled copy, offline), also
answering to the names of the default models, jina-embeddings-v3 and jina-reranker-v3 (`model_aliases`), as
the README's first requests and the Clients page's recipes use them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from helpers import RunningServer, server_in_thread

ALIASES = {"jina-embeddings-v3": "all-MiniLM-L6-v2", "jina-reranker-v3": "all-MiniLM-L6-v2"}


@pytest.fixture(scope="session")
def docs_server() -> Iterator[RunningServer]:
    with server_in_thread(models=["all-MiniLM-L6-v2"], model_aliases=ALIASES) as srv:
        yield srv


class Direct:
    """The server's own answers, over plain HTTP: the reference a client library's result is compared with."""

    def __init__(self, url: str) -> None:
        self.url = url

    def embed(self, texts: list[str], **fields) -> np.ndarray:
        r = httpx.post(self.url + "/v1/embeddings", json={"model": "jina-embeddings-v3", "input": texts,
                                                          "embedding_type": "float", **fields}, timeout=60)
        assert r.status_code == 200, r.text
        return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)

    def rerank(self, query: str, documents: list[str], **fields) -> list[tuple[int, float]]:
        r = httpx.post(self.url + "/v1/rerank", json={"model": "jina-reranker-v3", "query": query,
                                                      "documents": documents, **fields}, timeout=60)
        assert r.status_code == 200, r.text
        return [(x["index"], x["relevance_score"]) for x in r.json()["results"]]


@pytest.fixture(scope="session")
def direct(docs_server: RunningServer) -> Direct:
    return Direct(docs_server.url)
