"""Every recipe of docs/clients.md, run as written with the real client library against a real server.

Each Python block is written to a file and run as a script in its own process (only the base URL is
replaced by the test server's); a trailer prints the variables the recipe defines as JSON. They are compared
with the server's own answer to the same request over plain HTTP: vectors within 1e-5, the same ranking.
The Elasticsearch recipe is replayed: the requests its `openai` service sends, decoded as it decodes them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from markdown_blocks import DOCS, code_blocks

TOL = 1e-5
PAGE = (DOCS / "clients.md").read_text()
RECIPES = {b.title: b.code for b in code_blocks(PAGE) if b.title}
PLACEHOLDER = "http://127.0.0.1:8080"
TWO = ["A cat sits on the mat.", "Stock markets fell today."]
THREE = ["The cat sits on the mat.", "Stock markets fell today.", "Cats like warm places."]
QUERY = "Where does the cat sit?"
# offline and quiet: no telemetry, no cost-map download (the page says so for each client)
ENV = {"HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False", "ANONYMIZED_TELEMETRY": "False",
       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Expect:
    """What a recipe defines: `vectors` of `texts` (with `dimensions`), maybe `query_vector` of QUERY and
    `ranking` of THREE for QUERY, top 2, as [(text or index, score)]."""

    texts: list[str]
    dimensions: int | None = None
    query: bool = True
    ranking: str | None = None  # "text" or "index": how the recipe names a ranked document

    @property
    def names(self) -> list[str]:
        return ["vectors", *(["query_vector"] if self.query else []), *(["ranking"] if self.ranking else [])]


EXPECT = {
    "openai_sdk.py": Expect(TWO, 256, query=False),
    "langchain_jina.py": Expect(TWO, ranking="text"),
    "langchain_openai_embeddings.py": Expect(TWO, 256),
    "llamaindex_jina.py": Expect(TWO, ranking="text"),
    "llamaindex_openai.py": Expect(TWO),
    "haystack_jina.py": Expect(THREE, ranking="text"),
    "haystack_openai.py": Expect(TWO, 256),
    "litellm_jina.py": Expect(TWO, 256, query=False, ranking="index"),
}
NAMES = {**{title: e.names for title, e in EXPECT.items()}, "chroma_jina.py": ["hits"]}

# Runs each recipe file as `python FILE` would (runpy, __name__ == "__main__") in one child process, so the
# interpreter start and the imports the libraries share are paid once; a failing recipe fails only its test.
RUNNER = """
import json, runpy, sys, traceback
results = {}
for title, path, names in json.loads(sys.argv[1]):
    try:
        ns = runpy.run_path(path, run_name="__main__")
        results[title] = {"ok": {n: ns[n] for n in names}}
    except BaseException:
        results[title] = {"error": traceback.format_exc()}
def plain(o):
    return o.tolist() if hasattr(o, "tolist") else str(o)
print("__RESULTS__" + json.dumps(results, default=plain))
"""


@pytest.fixture(scope="module")
def recipe_results(docs_server, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("recipes")
    jobs = []
    for title, names in NAMES.items():
        code = RECIPES[title]
        assert PLACEHOLDER in code, f"{title} does not use {PLACEHOLDER}"
        (folder / title).write_text(code.replace(PLACEHOLDER, docs_server.url))
        jobs.append((title, str(folder / title), names))
    (folder / "_run_recipes.py").write_text(RUNNER)
    proc = subprocess.run([sys.executable, str(folder / "_run_recipes.py"), json.dumps(jobs)], cwd=folder,
                          env={**os.environ, **ENV}, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("__RESULTS__"))
    return json.loads(line[len("__RESULTS__"):])


def result(results: dict, title: str) -> dict:
    assert "error" not in results[title], results[title]["error"]
    return results[title]["ok"]


def close(got, expected) -> None:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, atol=TOL)


def same_ranking(got: list, expected: list[tuple[int, float]], documents: list[str] | None = None) -> None:
    """`got` = [(text or index, score)] best first, as the recipe prints it."""
    keys = [documents[i] if documents else i for i, _ in expected]
    assert [g[0] for g in got] == keys, (got, expected)
    np.testing.assert_allclose([g[1] for g in got], [s for _, s in expected], atol=TOL)


def test_every_recipe_is_tested():
    assert set(RECIPES) == {*NAMES, "Kibana Dev Tools"}


@pytest.mark.parametrize("title", list(EXPECT))
def test_recipe(recipe_results, direct, title):
    expect, out = EXPECT[title], result(recipe_results, title)
    fields = {"dimensions": expect.dimensions} if expect.dimensions else {}
    close(out["vectors"], direct.embed(expect.texts, **fields))
    if expect.query:
        close(out["query_vector"], direct.embed([QUERY], **fields)[0])
    if expect.ranking:
        same_ranking(out["ranking"], direct.rerank(QUERY, THREE, top_n=2), THREE if expect.ranking == "text" else None)


def test_chroma(recipe_results, direct):
    out = result(recipe_results, "chroma_jina.py")
    ids = ["cat", "stocks", "warm"]
    assert out["hits"] == [ids[i] for i, _ in direct.rerank(QUERY, THREE, top_n=2)]


# --------------------------------------------------------------------------- Elasticsearch (replayed)
def es_decode(embedding) -> np.ndarray:
    """As Elasticsearch's OpenAI response parser: a strict RFC 4648 base64 string of little-endian float32,
    or an array of floats."""
    if isinstance(embedding, str):
        assert len(embedding) % 4 == 0
        return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


@pytest.fixture(scope="module")
def es_endpoint(docs_server) -> dict:
    body = RECIPES["Kibana Dev Tools"]
    first, _, rest = body.partition("\n")
    assert first.startswith("PUT _inference/text_embedding/")
    settings = json.loads(rest)
    assert settings["service"] == "openai"
    service = settings["service_settings"]
    return {"url": service["url"].replace(PLACEHOLDER, docs_server.url), "model": service["model_id"],
            "headers": {"Authorization": f"Bearer {service['api_key']}", "Content-Type": "application/json"}}


@pytest.mark.parametrize("body,headers,dims", [
    ({"input": ["how big"], "encoding_format": "base64"}, {}, None),  # the probe when the endpoint is created
    ({"input": TWO, "user": "es-user", "encoding_format": "base64"}, {"OpenAI-Organization": "org-x"}, None),
    ({"input": TWO, "dimensions": 64, "encoding_format": "base64"}, {}, 64),  # dimensions set by the user
    ({"input": TWO}, {}, None),  # releases before base64: no format, float arrays
], ids=["probe", "current", "dimensions", "older"])
def test_elasticsearch_openai_service(es_endpoint, direct, body, headers, dims):
    r = httpx.post(es_endpoint["url"], json={"model": es_endpoint["model"], **body},
                   headers={**es_endpoint["headers"], **headers}, timeout=60)
    assert r.status_code == 200, r.text
    got = [es_decode(d["embedding"]) for d in r.json()["data"]]  # by position, as Elasticsearch reads them
    if "encoding_format" in body:
        assert all(isinstance(d["embedding"], str) for d in r.json()["data"])
    expected = direct.embed(body["input"], **({"dimensions": dims} if dims else {}))
    close(got, expected)
