"""Pure ASGI middleware: request ids, body-size limit, access log and request metrics.

Written against ASGI directly (not BaseHTTPMiddleware) so streaming bodies are counted as they arrive
and an oversize body is refused with 413 before it is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import metrics
from .context import request_id_var
from .errors import error_response

access_log = logging.getLogger("jinaserve.access")
log = logging.getLogger("jinaserve.middleware")

_OBSERVED_PATHS = {"/v1/embeddings", "/embeddings", "/v1/rerank", "/rerank", "/v1/multi-vector", "/multi-vector",
                   "/v1/classify", "/v1/train",
                   # other protocols (api/protocols/): Cohere, TEI, Ollama
                   "/v1/embed", "/v2/embed", "/v2/rerank", "/embed", "/embed_all", "/", "/api/embed",
                   "/api/embeddings"}
_OBSERVED_PREFIXES = ("/tei/",)  # TEI routes under a model name


def _observed(path: str) -> bool:
    return path in _OBSERVED_PATHS or path.startswith(_OBSERVED_PREFIXES)


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        rid = rid[:128]
        token = request_id_var.set(rid)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status_holder = {"status": 500}
        limit = self.max_body_bytes

        if scope.get("method") == "POST":
            ctype = headers.get("content-type", "")
            if "json" not in ctype and not ctype.startswith("multipart/"):
                # Every POST body is JSON but uploads (multipart, /v1/files); accept clients (curl -d) that label
                # them otherwise, on every route.
                scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
                scope["headers"].append((b"content-type", b"application/json"))
        declared = headers.get("content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._send_too_large(scope, receive, send, rid, limit, status_holder)
                return

            received = 0
            too_large = False

            async def limited_receive() -> Message:
                nonlocal received, too_large
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        too_large = True
                        raise _BodyTooLarge
                return message

            async def send_with_id(message: Message) -> None:
                if too_large:
                    # FastAPI turns an exception raised while reading the body into its own 400;
                    # that answer is dropped and the 413 below is sent instead.
                    return
                if message["type"] == "http.response.start":
                    status_holder["status"] = message["status"]
                    hdrs = list(message.get("headers", []))
                    hdrs.append((b"x-request-id", rid.encode("latin-1")))
                    message = {**message, "headers": hdrs}
                await send(message)

            try:
                if scope.get("method") == "POST" and _observed(scope.get("path", "")):
                    await self._run_cancellable(scope, limited_receive, send_with_id, status_holder)
                else:
                    await self.app(scope, limited_receive, send_with_id)
            except _BodyTooLarge:
                pass
            if too_large:
                await self._send_too_large(scope, receive, send, rid, limit, status_holder)
        finally:
            self._record(scope, state, status_holder["status"], time.perf_counter() - started)
            request_id_var.reset(token)

    async def _run_cancellable(self, scope: Scope, receive: Receive, send: Send,
                               status_holder: dict[str, int]) -> None:
        """Run an inference request; if the client disconnects before the response starts, cancel the
        handler, which cancels its queued batch items (work nobody will read is not done)."""
        body_done = asyncio.Event()
        response_started = False
        client_gone = False

        async def app_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done.set()
            return message

        async def app_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        handler = asyncio.create_task(self.app(scope, app_receive, app_send))

        async def watch_disconnect() -> None:
            await body_done.wait()
            while True:
                message = await receive()  # after the body, the server answers only on disconnect
                if message["type"] == "http.disconnect":
                    nonlocal client_gone
                    if not response_started and not handler.done():
                        client_gone = True
                        handler.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await handler
        except asyncio.CancelledError:
            if not client_gone:
                # We were cancelled ourselves: the server is stopping and its graceful-shutdown time ran out
                # before this request finished. Stop its work; answer a retryable 503 rather than letting the
                # server turn the cancellation into a bare 500.
                handler.cancel()
                if response_started:
                    raise
                status_holder["status"] = 503
                log.warning("graceful shutdown timed out; unfinished request answered 503")
                response = error_response(503, "The server is shutting down and could not finish this request "
                                          "in time; retry it.", headers={"retry-after": "1", "connection": "close"})
                await response(scope, receive, send)
                return
            status_holder["status"] = 499  # client closed the request (nginx's convention)
            log.info("client disconnected; request cancelled")
        finally:
            if not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _send_too_large(self, scope: Scope, receive: Receive, send: Send, rid: str, limit: int,
                              status_holder: dict[str, int]) -> None:
        status_holder["status"] = 413
        response = error_response(413, f"Request body is larger than the limit of {limit} bytes",
                                  headers={"x-request-id": rid, "connection": "close"})
        await response(scope, receive, send)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        path = scope.get("path", "")
        model = state.get("model") or "-"
        if _observed(path):
            metrics.REQUESTS.labels(path, model, str(status)).inc()
            if status < 400:
                metrics.REQUEST_LATENCY.labels(path, model).observe(seconds)
        if path in {"/metrics", "/health", "/healthz", "/readyz", "/live", "/ready"} and status < 400:
            return
        access_log.info(
            "%s %s %s", scope.get("method"), path, status,
            extra={"request_id": state.get("request_id"), "model": model, "status": status,
                   "inputs": state.get("inputs"), "tokens": state.get("tokens"),
                   "latency_ms": round(seconds * 1000, 2), "method": scope.get("method"), "path": path},
        )
