"""Ollama over HTTP with the real `ollama` package (`Client(host=...)`): embed, embeddings (legacy), list,
show, ps, and `/api/version`; model names with tags (`:latest`, `:<task>`); Ollama's error shape. Vectors equal
the Jina endpoint's for the same model/task/dimensions (1e-6)."""

from __future__ import annotations

import numpy as np
import ollama
import pytest
from proto_refs import AUTH, CE, MINILM, V5, jina_vectors, post

TEXTS = ["Berlin is the capital of Germany.", "embeddings for search and retrieval"]


@pytest.fixture(scope="module")
def client(proto_server):
    return ollama.Client(host=proto_server.url, headers=AUTH)


def test_embed_equals_jina(client, proto_server):
    ref = jina_vectors(proto_server, MINILM, TEXTS)
    r = client.embed(model=MINILM, input=TEXTS)
    np.testing.assert_allclose(np.array(r.embeddings), ref, atol=1e-6)
    assert r.model == MINILM and r.prompt_eval_count > 0 and r.total_duration > 0
    one = client.embed(model=f"{MINILM}:latest", input=TEXTS[0])
    np.testing.assert_allclose(np.array(one.embeddings), ref[:1], atol=1e-6)
    cut = client.embed(model=MINILM, input=TEXTS, dimensions=16)
    np.testing.assert_allclose(np.array(cut.embeddings), jina_vectors(proto_server, MINILM, TEXTS, dimensions=16),
                               atol=1e-6)
    # Ollama cuts only for 0 < dimensions < the model's width
    np.testing.assert_allclose(np.array(client.embed(model=MINILM, input=TEXTS, dimensions=4096).embeddings), ref,
                               atol=1e-6)
    assert client.embed(model=MINILM, input=[]).embeddings == []
    assert client.embed(model=MINILM, input="", keep_alive="5m", options={"num_ctx": 512}).embeddings == []


def test_task_tags(client, proto_server):
    for task in ("retrieval.query", "retrieval.passage", "classification"):
        r = client.embed(model=f"{V5}:{task}", input=TEXTS)
        np.testing.assert_allclose(np.array(r.embeddings), jina_vectors(proto_server, V5, TEXTS, task=task),
                                   atol=1e-6)
    np.testing.assert_allclose(np.array(client.embed(model=V5, input=TEXTS).embeddings),
                               jina_vectors(proto_server, V5, TEXTS), atol=1e-6)


def test_legacy_embeddings_are_not_normalised(client, proto_server):
    r = client.embeddings(model=f"{V5}:retrieval.query", prompt=TEXTS[0])
    ref = jina_vectors(proto_server, V5, TEXTS[:1], task="retrieval.query", normalized=False)[0]
    np.testing.assert_allclose(np.array(r.embedding), ref, atol=1e-5)
    assert abs(np.linalg.norm(ref) - 1) > 1e-3
    assert client.embeddings(model=MINILM, prompt="").embedding == []


def test_list_show_ps_version(client, proto_server):
    names = {m.model for m in client.list().models}
    assert {f"{MINILM}:latest", f"{V5}:latest", f"{V5}:retrieval.query", f"{V5}:clustering"} <= names
    assert not any(n.startswith(CE) for n in names)  # a reranker cannot answer /api/embed
    show = client.show(f"{V5}:retrieval.query")
    assert show.capabilities == ["embedding"] and show.modelinfo["general.architecture"] == "jina_v5"
    assert show.modelinfo["jinaserve.task"] == "retrieval.query"
    assert show.modelinfo["jina_v5.embedding_length"] == 32  # the tiny checkpoint's width
    assert {m.model for m in client.ps().models} >= {f"{MINILM}:latest", f"{V5}:latest"}
    r = proto_server.client().get("/api/version", headers=AUTH)
    assert r.status_code == 200 and r.json()["version"].count(".") == 2


def test_errors_in_ollama_shape(client, proto_server):
    for call, status, text in [(lambda: client.embed(model="nomic-embed-text", input="x"), 404, "not found"),
                               (lambda: client.embed(model=f"{V5}:q8_0", input="x"), 404, "not found"),
                               (lambda: client.embed(model=CE, input="x"), 400, "does not support embeddings"),
                               (lambda: client.embed(model=MINILM, input="word " * 400, truncate=False), 400,
                                "longer than"),
                               (lambda: client.show("nope"), 404, "not found")]:
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == status and text in e.value.error, e.value.error
    assert post(proto_server, "/api/embed", {"input": "x"}).json() == {"error": "model is required"}
    r = post(proto_server, "/api/embed", {"model": MINILM, "input": ["a", 3]})
    assert (r.status_code, r.json()) == (400, {"error": "invalid input type"})
    assert set(post(proto_server, "/api/embed", {"model": MINILM}, headers={}).json()) == {"error"}
    assert client.embed(model=MINILM, input="word " * 400).embeddings  # truncate defaults to true
