"""Hostile input: schemathesis against the served OpenAPI schema, plus hand-made nasty requests
(oversize bodies, deep nesting, huge lists, 1 MB strings, invalid UTF-8, wrong types) and API-key
handling. Every answer must be < 500 and every error a JSON body with a string `detail`."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from ops_figures import record

from helpers import server_in_thread

EXAMPLES = 12  # per operation and generation mode


@pytest.fixture(scope="module")
def srv(tiny_bert_path, tiny_cross_encoder_path):
    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}"],
                          max_body_bytes=2 * 1024 * 1024, max_inputs_per_request=512) as s:
        yield s


def _assert_error_json(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body.get("detail"), str) and body["detail"], r.text[:300]


def test_schemathesis_no_5xx_and_string_detail(srv):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/embeddings" for op in operations)
    statuses: dict[int, int] = {}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                r = case.call(base_url=srv.url, timeout=60)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (case.method, case.path, r.status_code, r.text[:300])
                if r.status_code >= 400:
                    body = r.json()
                    assert isinstance(body.get("detail"), str), r.text[:300]

            try:
                check()
            except Unsatisfiable:  # negative data for an operation that takes no input
                continue
    assert statuses.get(200, 0) > 0 and any(400 <= s < 500 for s in statuses)
    record("schemathesis", operations=len(operations), calls=sum(statuses.values()),
           statuses=dict(sorted(statuses.items())))


def _raw_post(port: int, body: bytes, path: str = "/v1/embeddings") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        # An oversize body is refused from its Content-Length alone, before any of it is read: send none of it,
        # since bytes left unread in the server's socket make its close a reset that can drop the 413.
        if len(body) <= 1024 * 1024:
            s.sendall(body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


@pytest.mark.parametrize("name, body, status", [
    ("oversize body", b'{"model": "tiny", "input": "' + b"a" * (3 * 1024 * 1024) + b'"}', 413),
    ("deeply nested JSON", b'{"model": "tiny", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("deeply nested objects", b'{"model": "tiny", "input": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}", 400),
    ("invalid UTF-8", b'{"model": "tiny", "input": "\xff\xfe\xfa bad"}', 400),
    ("lone surrogate escape", b'{"model": "tiny", "input": "\\ud800"}', 400),
    ("rerank: lone surrogate in query", b'{"model": "tiny-ce", "query": "\\udfff", "documents": ["a"]}', 400),
    ("rerank: lone surrogate in document", b'{"model": "tiny-ce", "query": "q", "documents": ["a\\ud834"]}', 400),
    ("not JSON", b"model=tiny&input=x", 400),
    ("truncated JSON", b'{"model": "tiny", "input": ["a", ', 400),
    ("JSON array body", b'["a", "b"]', 422),
    ("wrong type: input number", b'{"model": "tiny", "input": 42}', 422),
    ("wrong type: input object", b'{"model": "tiny", "input": {"x": 1}}', 422),
    ("wrong type: model list", b'{"model": ["tiny"], "input": "x"}', 422),
    ("null input", b'{"model": "tiny", "input": null}', 422),
    ("huge input list", json.dumps({"model": "tiny", "input": ["x"] * 100_000}).encode(), None),
    ("huge float", b'{"model": "tiny", "input": "x", "dimensions": 1e400}', 422),
    ("negative dimensions", b'{"model": "tiny", "input": "x", "dimensions": -5}', 422),
    ("rerank: documents not a list", b'{"model": "tiny-ce", "query": "q", "documents": 5}', 422),
    ("rerank: top_n string", b'{"model": "tiny-ce", "query": "q", "documents": ["a"], "top_n": "x"}', 422),
])
def test_nasty_bodies(srv, name, body, status):
    path = "/v1/rerank" if name.startswith("rerank") else "/v1/embeddings"
    code, payload = _raw_post(srv.port, body, path)
    assert code < 500, (name, code, payload[:300])
    if status is not None:
        assert code == status, (name, code, payload[:300])
    if code >= 400:
        assert isinstance(json.loads(payload)["detail"], str)
    # the server is still healthy afterwards
    assert httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "ok"}).status_code == 200


def test_one_megabyte_strings(srv):
    limit = 1_000_000  # Settings.max_input_chars default
    long_text = "word " * (limit // 5)
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": long_text}, timeout=120)
    assert r.status_code == 400 and "truncate" in r.json()["detail"]  # over the token window, no truncation
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": long_text, "truncate": True},
                   timeout=120)
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["data"][0]["embedding"]) == 32
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x" * (1024 * 1024)}, timeout=120)
    _assert_error_json(r)
    assert r.status_code in (400, 413, 422)
    r = httpx.post(srv.url + "/v1/rerank", json={"model": "tiny-ce", "query": "q" * (limit - 1),
                                                 "documents": ["d" * (limit - 1)]}, timeout=120)
    assert r.status_code == 200, r.text[:300]


def test_api_keys_constant_time_and_never_logged(tiny_bert_path, caplog, monkeypatch):
    import hmac

    from jinaserve.api import auth

    keys = ["sk-first-4f9a1c", "sk-second-77b2e0"]
    compared: list[bytes] = []
    real_compare = hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return real_compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    caplog.set_level(logging.DEBUG)
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], api_keys=keys) as s:
        url = s.url + "/v1/embeddings"
        body = {"model": "tiny", "input": "x"}
        cases = {
            "missing": {},
            "wrong": {"Authorization": "Bearer sk-wrong-000000"},
            "prefix of a key": {"Authorization": "Bearer sk-first"},
            "malformed": {"Authorization": "sk-first-4f9a1c"},
            "basic scheme": {"Authorization": "Basic c2stZmlyc3Q="},
            "non-latin": {"Authorization": "Bearer ключ".encode()},
            "empty bearer": {"Authorization": "Bearer"},
        }
        for name, headers in cases.items():
            r = httpx.post(url, json=body, headers=headers)
            assert r.status_code == 401, (name, r.text)
            _assert_error_json(r)
            assert all(k not in r.text for k in keys)
        compared.clear()
        r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {keys[1]}"})
        assert r.status_code == 200
        # every configured key is compared, with hmac.compare_digest, even after a match
        assert compared == [k.encode() for k in keys]
        assert httpx.post(url, json=body, headers={"Authorization": f"bearer {keys[0]}"}).status_code == 200
        assert httpx.get(s.url + "/v1/models").status_code == 401
        assert httpx.get(s.url + "/healthz").status_code == 200  # probes need no key
        assert httpx.get(s.url + "/readyz").status_code == 200
    logged = "\n".join(r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "sk-wrong-000000" not in logged
    for k in keys:
        assert k not in logged


def test_auth_off_ignores_authorization(srv):
    for header in ("Bearer None", "Bearer", "garbage", "Basic abc"):
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                       headers={"Authorization": header})
        assert r.status_code == 200, (header, r.text)
