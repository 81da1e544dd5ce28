"""Text Embeddings Inference over HTTP with its real clients, each pointed at the server by its base URL
alone: `huggingface_hub.InferenceClient.feature_extraction`, LangChain `HuggingFaceEndpointEmbeddings`, and
LlamaIndex `TextEmbeddingsInference`; then the TEI fields and routes (`/embed`, `/embed_all`, `/rerank` with
`texts` beside the Jina body on the same path, `/tokenize`, `/info`, `POST /`) and TEI's error shape.
Vectors equal the Jina endpoint's for the same model/task/dimensions (1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from proto_refs import AUTH, CE, KEY, MINILM, V4, V5, jina_scores, jina_vectors, post

from helpers import minilm_dir

TEXTS = ["Berlin is the capital of Germany.", "embeddings for search and retrieval"]


@pytest.fixture(autouse=True)
def hub_http_allowed(monkeypatch):
    """The suite sets HF_HUB_OFFLINE=1 (no model hub here), and huggingface_hub then refuses every HTTP request,
    even to a local TEI server: the clients need it off, as docs/protocols.md says."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_inference_client_feature_extraction(proto_server):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=proto_server.url, api_key=KEY)  # POST / : the first embedding model
    np.testing.assert_allclose(client.feature_extraction(TEXTS), jina_vectors(proto_server, MINILM, TEXTS),
                               atol=1e-6)
    one = client.feature_extraction(TEXTS[0])
    assert one.shape == (1, 384)
    # another served model by its base URL, with TEI's prompt_name / dimensions / normalize
    v5 = InferenceClient(base_url=f"{proto_server.url}/tei/{V5}", api_key=KEY)
    np.testing.assert_allclose(v5.feature_extraction(TEXTS, prompt_name="query", dimensions=8),
                               jina_vectors(proto_server, V5, TEXTS, task="retrieval.query", dimensions=8),
                               atol=1e-6)
    np.testing.assert_allclose(v5.feature_extraction(TEXTS, prompt_name="document", normalize=False),
                               jina_vectors(proto_server, V5, TEXTS, task="retrieval.passage", normalized=False),
                               atol=1e-6)
    np.testing.assert_allclose(v5.feature_extraction(TEXTS, prompt_name="text-matching"),
                               jina_vectors(proto_server, V5, TEXTS, task="text-matching"), atol=1e-6)


def test_langchain_huggingface_endpoint_embeddings(proto_server):
    from importlib.metadata import version

    from langchain_huggingface import HuggingFaceEndpointEmbeddings
    from packaging.version import Version

    if Version(version("langchain-huggingface")) >= Version("1.2.2"):
        # these releases refuse a URL as `model` before any request: the recipe below is the one that works
        with pytest.raises(ValueError):
            HuggingFaceEndpointEmbeddings(model=proto_server.url, huggingfacehub_api_token=KEY)
        return
    emb = HuggingFaceEndpointEmbeddings(model=proto_server.url, huggingfacehub_api_token=KEY)
    ref = jina_vectors(proto_server, MINILM, TEXTS)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), ref, atol=1e-6)
    np.testing.assert_allclose(emb.embed_query(TEXTS[0]), ref[0], atol=1e-6)
    tasks = HuggingFaceEndpointEmbeddings(model=f"{proto_server.url}/tei/{V5}", huggingfacehub_api_token=KEY,
                                          model_kwargs={"prompt_name": "query"})
    np.testing.assert_allclose(tasks.embed_documents(TEXTS),
                               jina_vectors(proto_server, V5, TEXTS, task="retrieval.query"), atol=1e-6)


def test_langchain_recipe_for_versions_that_refuse_urls(proto_server):
    """langchain-huggingface >= 1.2.2 refuses a URL as `model`; the documented recipe swaps in clients."""
    from huggingface_hub import AsyncInferenceClient, InferenceClient
    from langchain_huggingface import HuggingFaceEndpointEmbeddings

    emb = HuggingFaceEndpointEmbeddings(model="sentence-transformers/all-MiniLM-L6-v2")
    emb.client = InferenceClient(base_url=proto_server.url, api_key=KEY)
    emb.async_client = AsyncInferenceClient(base_url=proto_server.url, api_key=KEY)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), jina_vectors(proto_server, MINILM, TEXTS), atol=1e-6)


def test_llamaindex_text_embeddings_inference(proto_server):
    import asyncio

    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    emb = TextEmbeddingsInference(model_name=MINILM, base_url=proto_server.url, auth_token=KEY)
    ref = jina_vectors(proto_server, MINILM, TEXTS)
    np.testing.assert_allclose(emb.get_text_embedding_batch(TEXTS), ref, atol=1e-6)
    np.testing.assert_allclose(emb.get_query_embedding(TEXTS[1]), ref[1], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_text_embedding(TEXTS[0])), ref[0], atol=1e-6)
    v5 = TextEmbeddingsInference(model_name=V5, base_url=f"{proto_server.url}/tei/{V5}", auth_token=KEY)
    np.testing.assert_allclose(v5.get_text_embedding_batch(TEXTS), jina_vectors(proto_server, V5, TEXTS), atol=1e-6)


def test_embed_fields_and_errors(proto_server):
    r = post(proto_server, "/embed", {"inputs": TEXTS[0], "truncate": False})
    assert r.status_code == 200 and len(r.json()) == 1
    # token ids are refused unless the operator allows them (allow_token_ids; accepted: tests/ops/test_token_ids.py)
    ids = [101, 4068, 2003, 1996, 3007, 1997, 2762, 1012, 102]
    r = post(proto_server, "/embed", {"inputs": [TEXTS[0], ids]})
    assert r.status_code == 422 and "allow_token_ids" in r.json()["error"], r.text
    cases = [({"inputs": "word " * 400, "truncate": False}, 422, "Validation"),
             ({"inputs": []}, 400, "Empty"),
             ({"inputs": [[]]}, 422, "Validation"),
             ({"inputs": "x", "dimensions": 0}, 422, "Validation"),
             ({"inputs": "x", "dimensions": 385}, 422, "Validation"),
             ({"inputs": "x", "truncation_direction": "Left"}, 422, "Validation"),
             ({"inputs": "x", "prompt_name": "query"}, 422, "Validation"),
             ({"inputs": [1.5]}, 422, "Validation")]
    for body, status, kind in cases:
        r = post(proto_server, "/embed", body)
        assert (r.status_code, r.json()["error_type"]) == (status, kind), (body, r.text)
        assert set(r.json()) == {"error", "error_type"}
    r = post(proto_server, f"/tei/{V5}/embed", {"inputs": "x", "prompt_name": "nope"})
    assert "retrieval.query" in r.json()["error"]  # names the prompts the model has
    assert post(proto_server, "/embed", {"inputs": "x"}, headers={}).json()["error_type"] == "Unauthorized"
    long = post(proto_server, "/embed", {"inputs": "word " * 400})  # truncate defaults to true, as TEI's
    assert long.status_code == 200


def test_embed_all_per_token_vectors(proto_server):
    r = post(proto_server, f"/tei/{V4}/embed_all", {"inputs": TEXTS})
    assert r.status_code == 200, r.text
    ref = post(proto_server, "/v1/embeddings", {"model": V4, "input": TEXTS, "return_multivector": True}).json()
    for got, want in zip(r.json(), ref["data"], strict=True):
        np.testing.assert_allclose(np.array(got), np.array(want["embeddings"]), atol=1e-6)
    r = post(proto_server, "/embed_all", {"inputs": TEXTS})
    assert r.status_code == 424 and r.json()["error_type"] == "Backend" and V4 in r.json()["error"]


def test_rerank_both_shapes_on_one_path(proto_server):
    docs = ["cats purr", "stock prices", "a kitten plays"]
    ref = jina_scores(proto_server, CE, "kittens", docs)
    r = post(proto_server, "/rerank", {"query": "kittens", "texts": docs, "return_text": True})
    got = r.json()
    assert isinstance(got, list) and [x["index"] for x in got] == sorted(ref, key=lambda i: -ref[i])
    assert all(abs(x["score"] - ref[x["index"]]) < 1e-6 and x["text"] == docs[x["index"]] for x in got)
    assert list(got[0]) == ["index", "text", "score"]
    plain = post(proto_server, "/rerank", {"query": "kittens", "texts": docs}).json()
    assert all(list(x) == ["index", "score"] for x in plain)
    jina = post(proto_server, "/rerank", {"query": "kittens", "documents": docs}).json()
    assert jina["object"] == "list" and {x["index"]: x["relevance_score"] for x in jina["results"]} == ref
    for body, status, kind in [({"query": "q", "texts": []}, 400, "Empty"),
                               ({"query": "q", "texts": ["a"], "raw_scores": True}, 422, "Validation"),
                               ({"query": "q", "texts": "a"}, 422, "Validation")]:
        r = post(proto_server, "/rerank", body)
        assert (r.status_code, r.json()["error_type"]) == (status, kind), r.text
    r = post(proto_server, f"/tei/{CE}/rerank", {"query": "kittens", "texts": docs})
    assert {x["index"]: x["score"] for x in r.json()} == ref


def test_tokenize_against_the_tokenizer(proto_server):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()  # the published file pads to 128
    text = "Héllo wörld, embeddings!"
    enc = tok.encode(text)
    got = post(proto_server, "/tokenize", {"inputs": text}).json()[0]
    assert [t["id"] for t in got] == enc.ids
    assert got[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    for t, (start, stop) in zip(got[1:-1], enc.offsets[1:-1], strict=True):
        assert t["text"] == text[start:stop] and not t["special"]
        assert (t["start"], t["stop"]) == (len(text[:start].encode()), len(text[:stop].encode()))  # UTF-8 bytes
    bare = post(proto_server, "/tokenize", {"inputs": [text, "x"], "add_special_tokens": False}).json()
    assert len(bare) == 2 and [t["id"] for t in bare[0]] == enc.ids[1:-1]
    # the prompt is prepended, as TEI does (v5: retrieval.query → "Query: ")
    q = post(proto_server, f"/tei/{V5}/tokenize", {"inputs": "x", "prompt_name": "query"}).json()[0]
    assert "".join(t["text"] for t in q).startswith("Query: ")


def test_info_and_default_route(proto_server):
    info = proto_server.client().get("/info", headers=AUTH).json()
    assert info["model_id"] == "sentence-transformers/all-MiniLM-L6-v2" and info["served_model_name"] == MINILM
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["max_input_length"] == 256
    rr = proto_server.client().get(f"/tei/{CE}/info", headers=AUTH).json()
    assert "reranker" in rr["model_type"] and rr["served_model_name"] == CE
    scores = post(proto_server, "/", {"query": "kittens", "texts": ["a kitten", "bonds"]}).json()
    assert {x["index"] for x in scores} == {0, 1}
    np.testing.assert_allclose(post(proto_server, "/?model=" + V5, {"inputs": TEXTS}).json(),
                               jina_vectors(proto_server, V5, TEXTS), atol=1e-6)
    assert post(proto_server, "/tei/nope/embed", {"inputs": "x"}).status_code == 422


@pytest.mark.parametrize(("name", "task"), [("query", "retrieval.query"), ("document", "retrieval.passage"),
                                            ("passage", "retrieval.passage"), ("nl2code_query", "nl2code.query"),
                                            ("nl2code_document", "nl2code.passage"), ("qa.query", "qa.query")])
def test_prompt_names_of_the_published_configs(name, task):
    from jinaserve.api.protocols.tei import task_for_prompt
    from jinaserve.catalog import lookup

    code = lookup("jina-code-embeddings-0.5b").task_names
    v5 = lookup("jina-embeddings-v5-text-small").task_names
    names = code if name.startswith(("nl2code", "qa")) else v5
    if name in ("query", "document"):  # on a code model, the first query / passage task in the row's order
        assert task_for_prompt(name, code, "code") == {"query": "nl2code.query", "document": "nl2code.passage"}[name]
    assert task_for_prompt(name, names, "m") == task
