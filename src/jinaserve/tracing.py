"""Optional OpenTelemetry tracing (extra `otel`; off by default).

Turn on with `JINASERVE_OTEL=1` (or `otel = true` in the config file). Each HTTP request then becomes a
server span (FastAPI instrumentation) carrying `jinaserve.request_id` (the `X-Request-ID`). Health,
readiness and metrics endpoints are not traced.

Spans go to whatever tracer provider the process already has (e.g. when started under
`opentelemetry-instrument`); otherwise jinaserve sets up an SDK provider that exports over OTLP/HTTP
(configured by the standard `OTEL_EXPORTER_OTLP_*` variables) when that exporter is installed.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

log = logging.getLogger("jinaserve.tracing")

_EXCLUDED = "healthz,health,readyz,ready,live,metrics"


class TracingUnavailableError(RuntimeError):
    pass


def _ensure_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # the process (or its launcher) configured one
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "jinaserve"}))
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("tracing is on but no OTLP exporter is installed "
                    "(pip install opentelemetry-exporter-otlp-proto-http); spans are not exported")
    else:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def _server_request_hook(span: Any, scope: dict[str, Any]) -> None:
    """Tag the server span with the request id. When the client sent none, make it here and put it in
    the request headers, so the id jinaserve uses (logs, error bodies, `X-Request-ID`) is the span's."""
    if span is None or not span.is_recording():
        return
    headers = scope.setdefault("headers", [])
    rid = next((v.decode("latin-1") for k, v in headers if k.lower() == b"x-request-id" and v), None)
    if rid is None:
        rid = uuid.uuid4().hex
        scope["headers"] = [*headers, (b"x-request-id", rid.encode())]
    span.set_attribute("jinaserve.request_id", rid[:128])


def setup_tracing(app: Any, enabled: bool) -> bool:
    """Instrument `app` when `enabled`; returns whether tracing is on."""
    if not enabled:
        return False
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise TracingUnavailableError("JINASERVE_OTEL=1 needs the otel extra: pip install 'jinaserve[otel]'") from exc
    _ensure_provider()
    FastAPIInstrumentor.instrument_app(app, excluded_urls=_EXCLUDED, server_request_hook=_server_request_hook)
    log.info("OpenTelemetry tracing on")
    return True
