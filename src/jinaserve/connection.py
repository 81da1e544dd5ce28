"""The connection layer: uvicorn's HTTP/1.1 protocol with the three guards uvicorn lacks.

1. **Header timeout** (slowloris). uvicorn's `timeout_keep_alive` only runs between requests and is reset
   by every byte received, and nothing at all times a fresh connection (uvicorn issue #157,
   "--timeout-request-start", open since 2018), so a client that never sends, or drips one header byte at a
   time, holds a connection forever. Here a connection must deliver a request's complete headers within
   `header_timeout_s` of opening, or of the request's first byte on a kept-alive connection. Otherwise it
   is closed: silently if it sent nothing, with a JSON 408 if it had started a request.
2. **Connection cap**. Beyond `max_connections` open connections, a request gets a JSON 503 with
   `Retry-After` and `Connection: close` (uvicorn's own `limit_concurrency` answers plain text, and counts
   running tasks too).
3. **Shutdown without resets**. On SIGTERM uvicorn closes every idle kept-alive connection at once; a
   request already written by the client but not yet read by the server (or whose headers were still
   arriving) is then lost to a TCP reset. Here an idle connection stays open for `SHUTDOWN_READ_GRACE_S` to
   read what is on its way, a request whose headers were arriving may finish them (within the header
   timeout), and every request read during shutdown is answered (its result, or the 503 the graceful-timeout
   path gives) with `Connection: close`.

It is a subclass of uvicorn's own protocol class (httptools when installed, else h11), passed as
`uvicorn.Config(http=...)`, uvicorn's documented way to choose the HTTP implementation: the parser,
flow control, keep-alive, pipelining and the ASGI cycle stay uvicorn's. The subclass only watches when a
request's headers are complete (a new request-response cycle appears) and adds timers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import metrics
from .api.errors import error_response

log = logging.getLogger("jinaserve.connection")

# How long an idle kept-alive connection is still read from after SIGTERM before it is closed: long
# enough for bytes already sent (in flight on the network, or in the socket buffer while the event loop
# was busy) to be read and answered.
SHUTDOWN_READ_GRACE_S = 0.5


def _raw_response(status: int, message: str, extra: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body, for answers outside any ASGI cycle."""
    body = error_response(status, message).body
    reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close", **extra}
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI app a connection beyond `max_connections` gets for its requests."""
    response = error_response(503, "The server has too many open connections (max_connections); retry later.",
                              headers={"retry-after": "1", "connection": "close"})
    await response(scope, receive, send)


class GuardedHTTPMixin:
    """Header timeout, connection cap and a reset-free shutdown over a uvicorn HTTP protocol class."""

    header_timeout_s: float = 10.0
    max_connections: int | None = None

    # attributes of uvicorn's protocol classes used here
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    app: Any
    client: tuple[str, int] | None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # bytes of a request whose headers are not complete yet
        self._draining = False
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self.app = _over_capacity  # this connection's requests get the JSON 503, then it closes
            metrics.CONNECTIONS_CLOSED.labels("over_capacity").inc()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            return
        if self.cycle is not before:  # a request's headers are complete: its cycle started (or is queued)
            self._disarm()
            self._head_started = False
            if self._draining:
                self.cycle.keep_alive = False  # answered, then closed
        elif self._idle():  # bytes of the next request, its headers not complete yet
            self._head_started = True
            if self._head_timer is None:
                self._arm()

    def shutdown(self) -> None:
        """Called by uvicorn on SIGTERM for every open connection."""
        self._draining = True
        if not self._idle():
            super().shutdown()  # type: ignore[misc]  # the response in progress ends with Connection: close
        elif not self._head_started:
            self.loop.call_later(SHUTDOWN_READ_GRACE_S, self._close_if_idle)
        # else: a request is arriving; it is answered, or the header timer closes the connection

    # ------------------------------------------------------------------ helpers
    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _close_if_idle(self) -> None:
        if self._idle() and not self._head_started and not self.transport.is_closing():
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()  # type: ignore[union-attr]
            self._head_timer = None

    def _header_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._idle():
            return  # a request is being served; bytes of a pipelined next one may wait for it
        metrics.CONNECTIONS_CLOSED.labels("header_timeout").inc()
        if self._head_started:
            log.info("closing connection from %s: request headers incomplete after %g s",
                     self.client and self.client[0], self.header_timeout_s)
            self.transport.write(_raw_response(408, f"The request headers did not arrive within "
                                               f"{self.header_timeout_s:g} s (header_timeout_s).", {}))
        self.transport.close()


def protocol_class(header_timeout_s: float, max_connections: int | None) -> type:
    """uvicorn's HTTP protocol (httptools if installed, else h11) with the guards, for `Config(http=...)`."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools on CPython
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return type(f"Guarded{base.__name__}", (GuardedHTTPMixin, base),
                {"header_timeout_s": float(header_timeout_s), "max_connections": max_connections})
