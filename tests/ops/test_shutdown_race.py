"""Issue 11 item 6: SIGTERM must not reset requests that reached the server on kept-alive connections.

A real server process, kept-alive connections that each served one request, then at SIGTERM:

* 6 connections whose next request had started (its first header lines sent 0.2 s before the signal, the
  rest 0.3 s after) — uvicorn closed these at once, a reset for the client;
* 16 connections whose next request was written completely just before the signal;
* 4 clients keeping the server busy throughout.

Each of those requests gets an answer — its result, or a JSON 503 — never a reset or a closed socket (those
answered during the shutdown say `Connection: close`); and the server exits 0.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
from ops_figures import record

from helpers import server_process


def _request(body: bytes) -> bytes:
    return (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def _read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length framed); raises ConnectionError if the socket dies first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer (got {data[:80]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of the answer")
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_sigterm_answers_requests_already_sent_on_idle_keepalive_connections(tiny_bert_path):
    body = json.dumps({"model": "tiny", "input": ["a request sent just before the signal"]}).encode()
    with server_process("--models", f"tiny={tiny_bert_path}", "--threads", "1",
                        env={"JINASERVE_LOG_LEVEL": "warning"}) as srv:
        def keepalive_connection() -> socket.socket:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(_request(body))
            status, headers, _ = _read_response(s)
            assert status == 200 and headers.get("connection") != "close"
            return s

        partial = [keepalive_connection() for _ in range(6)]
        complete = [keepalive_connection() for _ in range(16)]
        stop = threading.Event()

        def busy() -> None:
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                while not stop.is_set():
                    try:
                        c.post("/v1/embeddings", json={"model": "tiny", "input": ["load " * 200] * 8})
                    except httpx.HTTPError:
                        return  # the server went away: expected once it has stopped
        loaders = [threading.Thread(target=busy, daemon=True) for _ in range(4)]
        for t in loaders:
            t.start()
        time.sleep(0.5)
        request = _request(body)
        cut = request.index(b"Content-Type")
        for s in partial:
            s.sendall(request[:cut])  # the request line and Host: the request has begun
        time.sleep(0.2)
        for s in complete:
            s.sendall(request)
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for s in partial:
            s.sendall(request[cut:])
        outcomes: list[str] = []
        for s in partial + complete:
            try:
                status, headers, payload = _read_response(s)
                assert status in (200, 503), (status, payload[:200])
                if s in partial:  # answered during the shutdown: the server says it closes
                    assert headers.get("connection") == "close", headers
                if status == 503:
                    assert isinstance(json.loads(payload)["detail"], str)
                outcomes.append(str(status))
            except (ConnectionError, OSError) as exc:
                outcomes.append(f"lost: {type(exc).__name__}")
            finally:
                s.close()
        stop.set()
        rc = srv.process.wait(timeout=60)
    record("sigterm_keepalive_race", sent_before_sigterm=len(partial) + len(complete),
           answered=sum(o in ("200", "503") for o in outcomes), lost=sum(o.startswith("lost") for o in outcomes),
           exit_code=rc)
    assert all(o in ("200", "503") for o in outcomes), outcomes
    assert rc == 0
