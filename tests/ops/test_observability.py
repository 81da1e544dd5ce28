"""Observability: request ids (X-Request-ID in → header, error body and access log out), structured
access logs, and optional OpenTelemetry tracing (off by default; on with JINASERVE_OTEL=1).
(/metrics under load is checked in test_load.py.)"""

from __future__ import annotations

import logging
import sys

import httpx
import pytest

from helpers import server_in_thread


def test_request_ids_propagate(tiny_bert_path, caplog):
    caplog.set_level(logging.INFO, logger="jinaserve.access")
    with server_in_thread(models=[f"tiny={tiny_bert_path}"]) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                       headers={"X-Request-ID": "client-id-123"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-123"
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "nope", "input": "x"},
                       headers={"X-Request-ID": "client-id-456"})
        assert r.status_code == 400
        assert r.headers["x-request-id"] == "client-id-456" and r.json()["request_id"] == "client-id-456"
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny"})  # no id: one is made
        made = r.headers["x-request-id"]
        assert len(made) == 32 and r.json()["request_id"] == made
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                       headers={"X-Request-ID": "z" * 1000})
        assert r.headers["x-request-id"] == "z" * 128  # bounded
    records = {getattr(rec, "request_id", None): rec for rec in caplog.records if rec.name == "jinaserve.access"}
    assert records["client-id-123"].status == 200 and records["client-id-123"].model == "tiny"
    assert records["client-id-123"].latency_ms > 0 and records["client-id-123"].inputs == 1
    assert records["client-id-456"].status == 400 and made in records


def test_tracing_off_by_default_and_on_with_the_extra(tiny_bert_path):
    pytest.importorskip("opentelemetry.instrumentation.fastapi", reason="the otel extra is not installed")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from jinaserve.config import Settings

    assert Settings().otel is False
    with server_in_thread(models=[f"tiny={tiny_bert_path}"]) as srv:  # default settings: no tracing
        assert httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"}).status_code == 200
    # jinaserve neither loaded its tracing module nor installed a tracer provider: with only the API's
    # no-op provider, no span is recorded or exported (by jinaserve or FastAPI's own hooks)
    assert "jinaserve.tracing" not in sys.modules
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], otel=True) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "x"},
                       headers={"X-Request-ID": "traced-1"})
        assert r.status_code == 200
        r2 = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "y"})
        httpx.get(srv.url + "/healthz")
    spans = [s for s in exporter.get_finished_spans()
             if s.kind == trace.SpanKind.SERVER and s.instrumentation_scope.name.startswith("opentelemetry.")]
    ids = {s.attributes.get("jinaserve.request_id") for s in spans}
    assert "traced-1" in ids and r2.headers["x-request-id"] in ids  # a made-up id is the span's id too
    assert all(s.attributes.get("http.route") == "/v1/embeddings" for s in spans)  # health is not traced
