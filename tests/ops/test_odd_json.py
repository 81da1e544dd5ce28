"""Issue 11 item 3: no input, however odd, gives a 5xx — on every entry point.

A property test: hypothesis puts arbitrary JSON values — integers far beyond 64 bits, NaN and infinities,
lone surrogates, nested lists and objects, image-looking strings — into every field of every JSON endpoint,
and into the path of `GET /v1/models/{id}`, against a real server with a text embedder, a cross-encoder, a
multimodal jina-embeddings-v4, a jina-clip-v2 and a multi-vector jina-colbert-v2. The endpoints and their
fields come from the server's own OpenAPI schema, plus the routes the schema leaves out (the Cohere, TEI and
Ollama protocols, `/tei/{model}/...`, legacy aliases: found from the app's own routes and their body models),
plus the fields of bodies parsed by hand (the Voyage, TEI and Cohere bodies of the shared paths), aliases and
positions inside lists. Every answer must be < 500, and every error a JSON body in the shape of the protocol
that answers (docs/protocols.md, "Errors"): Jina's string `detail`, TEI's `{error, error_type}`, Cohere's
`{id, message}`, Ollama's `{error}`, Voyage's `{detail}`. The issue's own examples, and the inputs that once
gave a 500 at a seam between features, are always among the cases."""

from __future__ import annotations

import json
import math
import os
import re
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
# Bodies the shared paths parse by hand, by protocol (docs/protocols.md): Voyage embeddings; TEI, Voyage and
# Cohere v1 rerank; TEI's rerank under a model prefix and its root route.
ALIASES["/v1/embeddings"] += ["output_dtype", "input_type", "encoding_format"]
ALIASES["/v1/rerank"] += ["texts", "raw_scores", "return_text", "truncation_direction", "rank_fields",
                          "max_chunks_per_doc", "documents[0].title"]
ALIASES["/tei/{model}/rerank"] = ["query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction"]
ALIASES["/"] = ALIASES["/tei/{model}"] = ["inputs", "inputs[0]", "query", "texts", "dimensions", "normalize",
                                          "prompt_name", "truncate"]
for _path in ("/v2/embed", "/v1/embed"):
    ALIASES[_path] = ["texts[0]", "images[0]", "inputs[0]", "inputs[0].content"]
ALIASES["/v1/batch/embeddings"] = ["input[0]", "input[0].body", "input[0].custom_id", "input[0].image"]
ALIASES["/v1/classify"] = ["input[0]", "input[0].image", "labels[0]", "labels.group"]
ALIASES["/v1/train"] = ["input[0]", "input[0].label", "input[0].image"]
ALIASES["/v1/multi-vector"] = ALIASES["/embeddings"] = ALIASES["/multi-vector"] = ALIASES["/v1/embeddings"]
ALIASES["/rerank"] = ALIASES["/v1/rerank"]
MODELS = ["tiny", "tiny-ce", "v4", "clip", "colbert"]  # served by the fixture

ODD_STRINGS = ["\ud800", "a\udfffb", "\udbff\udc00", "", " ", "\x00", "null", "NaN", "-1", "1e999",
               "data:image/png;base64,", "data:image/png;base64,iVBORw0KGgo=", "http://127.0.0.1:9/x.png",
               "file:///etc/passwd", "/etc/passwd", "AAAA", "v4", "tiny", "tiny-ce", "clip", "colbert",
               "retrieval.query", "é" * 300, "http://[::1/x.png", "https://[zz]/x.png", "http://a:99999/x.png",
               "search_query", "query", "int8", "START"]

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
    png = "data:image/png;base64," + _PNG_B64
    if path.startswith("/tei/") or path in ("/embed", "/embed_all", "/tokenize", "/"):
        if path.endswith("/rerank") or path in ("/", "/tei/{model}"):
            return [{"query": "q", "texts": ["a", "b"]}, {"inputs": ["hello", "world"]}]
        return [{"inputs": ["hello", "world"]}, {"inputs": "hello", "truncate": True}]
    if path in ("/v2/embed", "/v1/embed"):
        return [{"model": "tiny", "texts": ["hello"], "input_type": "search_query"},
                {"model": "clip", "images": [png], "embedding_types": ["float", "int8"]},
                {"model": "v4", "inputs": [{"content": [{"type": "image_url", "image_url": {"url": png}}]}]}]
    if path == "/v2/rerank":
        return [{"model": "tiny-ce", "query": "q", "documents": ["a", "b"]},
                {"model": "colbert", "query": "q", "documents": ["a", "b"], "top_n": 1}]
    if path.startswith("/api/"):
        return [{"model": "tiny", "input": ["hello"]}, {"model": "clip:latest", "prompt": "hello"}]
    if path == "/v1/classify":
        return [{"model": "tiny", "input": ["hello"], "labels": ["x", "y"]},
                {"model": "clip", "input": [{"image": _PNG_B64}, "hi"], "labels": {"g": ["x", "y"]}}]
    if path == "/v1/train":
        return [{"model": "tiny", "input": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}],
                 "num_iters": 1}]
    if path == "/v1/batch/embeddings":
        return [{"model": "tiny", "input": ["hello", {"text": "world"}]},
                {"model": "clip", "input": [{"custom_id": "a", "body": {"input": [{"image": png}]}}]}]
    if path == "/v1/batches":
        return [{"input_file_id": "file-nope", "endpoint": "/v1/embeddings"}]
    if "rerank" in path:
        return [{"model": "tiny-ce", "query": "q", "documents": ["a", "b"]},
                {"model": "v4", "query": "q", "documents": ["a", {"text": "b"}]},
                {"model": "colbert", "query": "q", "texts": ["a", "b"]},
                {"model": "clip", "query": "q", "documents": ["a"], "top_k": 1, "truncation": True}]
    if "embed" in path or "multi-vector" in path:
        return [{"model": "tiny", "input": ["hello", "world"]},
                {"model": "v4", "input": ["hello", {"image": _PNG_B64}]},
                {"model": "colbert", "input": ["hello"], "output_dtype": None},
                {"model": "clip", "input": [{"image": png}, "hi"]}]
    return [{}]


def expected_shape(path: str, body: Any) -> str:
    """Which protocol answers a request (the dispatch rule of docs/protocols.md, restated)."""
    if path.startswith("/tei/") or path in ("/embed", "/embed_all", "/tokenize", "/"):
        return "tei"
    if path in ("/v1/embed", "/v2/embed", "/v2/rerank"):
        return "cohere"
    if path.startswith("/api/"):
        return "ollama"
    if isinstance(body, dict) and path in ("/v1/embeddings", "/embeddings") and "output_dtype" in body:
        return "voyage"
    if isinstance(body, dict) and path in ("/v1/rerank", "/rerank"):
        if "texts" in body and "documents" not in body:
            return "tei"
        if "top_k" in body and "truncation" in body and "top_n" not in body:
            return "voyage"
        if "rank_fields" in body or "max_chunks_per_doc" in body:
            return "cohere"
    return "jina"


def error_in_shape(shape: str, body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if shape == "tei":
        return set(body) == {"error", "error_type"} and isinstance(body["error"], str)
    if shape == "cohere":
        return set(body) == {"id", "message"} and isinstance(body["message"], str)
    if shape == "ollama":
        return set(body) == {"error"} and isinstance(body["error"], str)
    if shape == "voyage":
        return set(body) == {"detail"} and isinstance(body["detail"], str)
    return isinstance(body.get("detail"), str) and bool(body["detail"]) and isinstance(body.get("code"), str)


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
def srv(tiny_bert_path, tiny_cross_encoder_path, tiny_v4_path, tiny_clip_v2_path, tiny_colbert_v2_path,
        tmp_path_factory) -> Iterator[RunningServer]:
    # its own data dir: the batch jobs it creates run here, not on another test server of the session
    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}",
                                  f"v4={tiny_v4_path}", f"clip={tiny_clip_v2_path}", f"colbert={tiny_colbert_v2_path}"],
                          max_body_bytes=2 * 1024 * 1024, threads=1,
                          data_dir=str(tmp_path_factory.mktemp("odd-json-data"))) as s:
        yield s


def _operations(srv: RunningServer) -> dict[str, list[str]]:
    """Every JSON POST path → its fields: the server's OpenAPI schema, then the routes the schema leaves out
    (found from the app's own routes, with their body models' fields), plus the aliases and hand-parsed
    fields above. Multipart uploads (`/v1/files`) are not JSON and are left out."""
    spec = httpx.get(srv.url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    ops: dict[str, list[str]] = {}
    for path, methods in spec["paths"].items():
        post = methods.get("post")
        if not post:
            continue
        content = post.get("requestBody", {}).get("content", {})
        if "application/json" not in content and content:
            continue
        ref = content.get("application/json", {}).get("schema", {}).get("$ref")
        fields = list(schemas[ref.rsplit("/", 1)[-1]].get("properties", {})) if ref else []
        ops[path] = fields + ALIASES.get(path, [])
    for path, fields in _unlisted_post_routes(srv.app).items():
        ops.setdefault(path, fields + ALIASES.get(path, []))
    return ops


def _unlisted_post_routes(app: Any) -> dict[str, list[str]]:
    from fastapi.routing import APIRoute

    def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI keeps included routers nested
            if inner is not None:
                yield from walk(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
            else:
                yield prefix, route

    out: dict[str, list[str]] = {}
    for prefix, route in walk(app.routes):
        if isinstance(route, APIRoute) and "POST" in route.methods and not route.include_in_schema:
            fields: list[str] = []
            for param in route.dependant.body_params:
                model = getattr(param, "type_", None) or getattr(param.field_info, "annotation", None)
                fields += list(getattr(model, "model_fields", {}))
            out[re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)] = fields
    return out


def _concrete(path: str, model: str) -> str:
    return path.replace("{model}", quote(model.encode("utf-8", "surrogatepass"), safe=""))


def test_arbitrary_json_in_every_field_never_gives_5xx(srv):
    ops = _operations(srv)
    # the OpenAPI routes, and the protocol routes and aliases the schema leaves out
    assert {"/v1/embeddings", "/v1/rerank", "/v1/multi-vector", "/v1/classify", "/v1/train", "/v1/batch/embeddings",
            "/v1/batches", "/v2/embed", "/v1/embed", "/v2/rerank", "/embed", "/embed_all", "/tokenize", "/",
            "/tei/{model}/embed", "/tei/{model}/rerank", "/tei/{model}", "/api/embed", "/api/embeddings",
            "/api/show", "/multi-vector", "/embeddings", "/rerank"} <= set(ops), sorted(ops)
    paths = sorted(ops)
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=srv.url, timeout=60)

    def check(r: httpx.Response, what: str, shape: str = "jina") -> None:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (what, r.status_code, r.text[:300])
        body = r.json()  # always JSON
        if r.status_code >= 400:
            assert error_in_shape(shape, body), (what, shape, r.text[:300])

    @given(data=st.data())
    # the examples, always run
    @example(data=("/v1/embeddings", 0, [("dimensions", 18446744073709551616)]))
    @example(data=("/v1/embeddings", 0, [("input", 1180591620717411303424)]))
    @example(data=("/v1/embeddings", 0, [("dimensions", "\ud800")]))
    @example(data=("/v1/embeddings", 0, [("input", [{"foo": "\ud800"}])]))
    @example(data=("/v1/rerank", 0, [("documents", [100000000000000000000000])]))
    @example(data=("/v1/embeddings", 1, [("task", "\ud800")]))
    # inputs that gave a 500 where the features meet: an image URL that is not a URL (every image path, the
    # batch job's URLs), lone surrogates and huge integers in a batch job's inline lines
    @example(data=("/v1/embeddings", 1, [("input", [{"image": "http://[::1/x.png"}])]))
    @example(data=("/v1/rerank", 3, [("documents", [{"image": "https://[zz]/x.png"}])]))
    @example(data=("/v2/embed", 1, [("images", ["http://[::1/x.png"])]))
    @example(data=("/v1/classify", 1, [("input", [{"image": "http://[::1/x.png"}])]))
    @example(data=("/v1/batch/embeddings", 0, [("input", ["\ud800"])]))
    @example(data=("/v1/batch/embeddings", 0, [("input", [-(2**80)])]))
    @example(data=("/v1/batch/embeddings", 1, [("input[0].custom_id", "\ud800")]))
    @example(data=("/v1/batch/embeddings", 0, [("input", None), ("input_url", "http://[::1/")]))
    @example(data=("/v1/batch/embeddings", 0, [("webhook_url", "http://[::1/")]))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def one(data) -> None:
        model = "tiny"
        if isinstance(data, tuple):  # an @example: (path, base, [(field, value)])
            path, base_i, changes = data
        else:
            path = data.draw(st.sampled_from(paths))
            bases = _bases(path)
            base_i = data.draw(st.integers(0, len(bases) - 1))
            fields = ops[path] or ["input"]
            changes = data.draw(st.lists(st.tuples(st.sampled_from(fields), json_values), min_size=1, max_size=3))
            if "{model}" in path:
                model = data.draw(st.sampled_from([*MODELS, "nope", "\ud800", "a/b"]))
        body = json.loads(json.dumps(_bases(path)[base_i]))
        for field, value in changes:
            _set(body, field, value)
        raw = json.dumps(body, allow_nan=True, ensure_ascii=True).encode()  # NaN/Infinity and \\ud800 escapes
        url = _concrete(path, model)
        check(client.post(url, content=raw, headers={"content-type": "application/json"}), f"{url} {raw[:200]!r}",
              expected_shape(path, body))

    @given(value=json_values)
    @settings(max_examples=EXAMPLES // 6, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def whole_body(value) -> None:
        raw = json.dumps(value, allow_nan=True, ensure_ascii=True).encode()
        for path in ("/v1/embeddings", "/v1/rerank", "/v2/embed", "/embed", "/api/embed", "/v1/batch/embeddings"):
            check(client.post(path, content=raw, headers={"content-type": "application/json"}),
                  f"{path} {raw[:200]!r}", expected_shape(path, value))

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


def test_every_json_route_reads_a_curl_d_body(srv):
    """docs/http-api.md: a body sent as application/x-www-form-urlencoded (what `curl -d` sends), or with no
    content type, is read as JSON — on every JSON route, the protocol routes and aliases included."""
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        for path in sorted(_operations(srv)):
            body = json.dumps(_bases(path)[0]).encode()
            url = _concrete(path, "tiny")
            want = client.post(url, content=body, headers={"content-type": "application/json"})
            for ctype in ("application/x-www-form-urlencoded", None):
                headers = {"content-type": ctype} if ctype else {}
                got = client.post(url, content=body, headers=headers)
                assert got.status_code == want.status_code, (path, ctype, want.status_code, got.text[:300])
