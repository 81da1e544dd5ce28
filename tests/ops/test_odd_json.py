"""Issue 11 item 3: no input, however odd, gives a 5xx.

A property test: hypothesis puts arbitrary JSON values — integers far beyond 64 bits, NaN and infinities,
lone surrogates, nested lists and objects, image-looking strings — into every field of every JSON endpoint
(the fields come from the server's own OpenAPI schema, plus the aliases it accepts and positions inside
`input` / `documents`), and into the path of `GET /v1/models/{id}`, against a real server with a text
embedder, a cross-encoder and a multimodal jina-embeddings-v4. Every answer must be < 500, and every error a
JSON body with a string `detail`. The issue's own examples are always among the cases."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ops_figures import record

from helpers import RunningServer, server_in_thread

# JINASERVE_ODD_JSON_EXAMPLES=5000 for a longer, randomised hunt; the suite runs a fixed 300.
EXAMPLES = int(os.environ.get("JINASERVE_ODD_JSON_EXAMPLES", "300"))
DERANDOMIZE = "JINASERVE_ODD_JSON_EXAMPLES" not in os.environ

# Field spellings the schemas accept besides their own names (AliasChoices), and positions inside lists.
ALIASES = {"/v1/embeddings": ["content", "texts", "embedding_types", "task_type", "output_dimensionality",
                              "output_dimension", "truncation", "input[0]", "input[1]", "input[0].text",
                              "input[0].image", "input[0].url", "input[0].bytes"],
           "/v1/rerank": ["top_k", "max_tokens_per_doc", "truncate", "documents[0]", "documents[1].text",
                          "documents[0].image", "query.text"]}
ALIASES["/v1/multi-vector"] = ALIASES["/embeddings"] = ALIASES["/multi-vector"] = ALIASES["/v1/embeddings"]
ALIASES["/rerank"] = ALIASES["/v1/rerank"]

ODD_STRINGS = ["\ud800", "a\udfffb", "\udbff\udc00", "", " ", "\x00", "null", "NaN", "-1", "1e999",
               "data:image/png;base64,", "data:image/png;base64,iVBORw0KGgo=", "http://127.0.0.1:9/x.png",
               "file:///etc/passwd", "/etc/passwd", "AAAA", "v4", "tiny", "tiny-ce", "retrieval.query", "é" * 300]

leaves = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**90),
    st.integers(min_value=-(2**90), max_value=-(2**63)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=6),
    st.sampled_from(ODD_STRINGS),
)
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=6) | st.sampled_from(["text", "image", "url"]), inner,
                                           max_size=4), max_leaves=10)


def _bases(path: str) -> list[dict[str, Any]]:
    """Valid bodies to start from (every model kind the path serves); {} for a path this test does not know."""
    if "rerank" in path:
        return [{"model": "tiny-ce", "query": "q", "documents": ["a", "b"]},
                {"model": "v4", "query": "q", "documents": ["a", {"text": "b"}]}]
    if "embed" in path or "multi-vector" in path:
        return [{"model": "tiny", "input": ["hello", "world"]},
                {"model": "v4", "input": ["hello", {"image": _PNG_B64}]}]
    return [{}]


def _png_b64() -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


_PNG_B64 = _png_b64()


def _set(body: dict[str, Any], field: str, value: Any) -> None:
    """`field` is a name, `name[i]` (an item of a list) or `name[i].key` / `name.key` (a key of an object)."""
    name, _, rest = field.partition("[")
    if not rest:
        name, _, key = field.partition(".")
        if key:
            body[name] = {key: value}
        else:
            body[name] = value
        return
    pos, _, key = rest.partition("]")
    items = list(body.get(name) or ["x"]) if isinstance(body.get(name), list) else ["x"]
    while len(items) <= int(pos):
        items.append("x")
    items[int(pos)] = {key.lstrip("."): value} if key else value
    body[name] = items


@pytest.fixture(scope="module")
def srv(tiny_bert_path, tiny_cross_encoder_path, tiny_v4_path) -> Iterator[RunningServer]:
    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}",
                                  f"v4={tiny_v4_path}"], max_body_bytes=2 * 1024 * 1024) as s:
        yield s


def _operations(srv: RunningServer) -> dict[str, list[str]]:
    """Every JSON POST path of the server's OpenAPI schema (plus the aliases the routes serve) → its fields."""
    spec = httpx.get(srv.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    ops: dict[str, list[str]] = {}
    for path, methods in spec["paths"].items():
        post = methods.get("post")
        if not post:
            continue
        ref = post.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        fields = list(schemas[ref.rsplit("/", 1)[-1]].get("properties", {})) if ref else []
        ops[path] = fields + ALIASES.get(path, [])
    for alias, target in (("/embeddings", "/v1/embeddings"), ("/multi-vector", "/v1/multi-vector"),
                          ("/rerank", "/v1/rerank")):
        if target in ops:
            ops.setdefault(alias, ops[target])
    return ops


def test_arbitrary_json_in_every_field_never_gives_5xx(srv):
    ops = _operations(srv)
    assert {"/v1/embeddings", "/v1/rerank", "/v1/multi-vector"} <= set(ops)
    paths = sorted(ops)
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=srv.url, timeout=60)

    def check(r: httpx.Response, what: str) -> None:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (what, r.status_code, r.text[:300])
        body = r.json()  # always JSON
        if r.status_code >= 400:
            assert isinstance(body.get("detail"), str) and body["detail"], (what, r.text[:300])

    @given(data=st.data())
    # the examples, always run
    @example(data=("/v1/embeddings", 0, [("dimensions", 18446744073709551616)]))
    @example(data=("/v1/embeddings", 0, [("input", 1180591620717411303424)]))
    @example(data=("/v1/embeddings", 0, [("dimensions", "\ud800")]))
    @example(data=("/v1/embeddings", 0, [("input", [{"foo": "\ud800"}])]))
    @example(data=("/v1/rerank", 0, [("documents", [100000000000000000000000])]))
    @example(data=("/v1/embeddings", 1, [("task", "\ud800")]))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def one(data) -> None:
        if isinstance(data, tuple):  # an @example: (path, base, [(field, value)])
            path, base_i, changes = data
        else:
            path = data.draw(st.sampled_from(paths))
            bases = _bases(path)
            base_i = data.draw(st.integers(0, len(bases) - 1))
            fields = ops[path] or ["input"]
            changes = data.draw(st.lists(st.tuples(st.sampled_from(fields), json_values), min_size=1, max_size=3))
        body = json.loads(json.dumps(_bases(path)[base_i]))
        for field, value in changes:
            _set(body, field, value)
        raw = json.dumps(body, allow_nan=True, ensure_ascii=True).encode()  # NaN/Infinity and \\ud800 escapes
        check(client.post(path, content=raw, headers={"content-type": "application/json"}), f"{path} {raw[:200]!r}")

    @given(value=json_values)
    @settings(max_examples=EXAMPLES // 6, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def whole_body(value) -> None:
        raw = json.dumps(value, allow_nan=True, ensure_ascii=True).encode()
        for path in ("/v1/embeddings", "/v1/rerank"):
            check(client.post(path, content=raw, headers={"content-type": "application/json"}), f"{path} {raw[:200]!r}")

    @given(name=st.text(st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=20))
    @example(name="\ud800")
    @settings(max_examples=EXAMPLES // 6, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def model_card(name: str) -> None:
        r = client.get("/v1/models/" + quote(name.encode("utf-8", "surrogatepass"), safe=""))
        check(r, f"GET /v1/models/{name!r}")
        assert r.status_code in (200, 404), (name, r.status_code, r.text[:200])

    try:
        one()
        whole_body()
        model_card()
    finally:
        client.close()
        total = sum(statuses.values())
        record("odd_json_property", requests=total, errors_5xx=sum(v for k, v in statuses.items() if k >= 500),
               statuses=dict(sorted(statuses.items())))
    assert statuses.get(200, 0) > 0 and math.fsum(v for k, v in statuses.items() if 400 <= k < 500) > 0
