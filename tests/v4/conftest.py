"""Fixtures for jina-embeddings-v4: a tiny random-weight checkpoint in the published layout, small
generated images, a local image HTTP server on 127.0.0.1 (normal, slow, oversize, HTML, redirect
routes), and servers with the SSRF guard on and off."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_v4 import JPEG, PNG, build_tiny_v4_merged


@pytest.fixture(scope="session")
def tiny_v4_merged_path(tiny_v4_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_v4_merged(tiny_v4_path, tmp_path_factory.mktemp("tiny-v4-vllm-retrieval"), "retrieval")


@pytest.fixture(scope="session")
def v4_embedder(tiny_v4_path: Path):
    from jinaserve import Embedder

    emb = Embedder(f"jina-embeddings-v4={tiny_v4_path}", device="cpu")
    yield emb
    emb.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        try:
            self._route(self.path.split("?")[0])
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts under test)
            pass

    def _route(self, path: str) -> None:
        if path == "/img.png":
            self._send(200, PNG, "image/png")
        elif path == "/img.jpg":
            self._send(200, JPEG, "image/jpeg")
        elif path == "/page.html":
            self._send(200, b"<html>not an image</html>", "text/html; charset=utf-8")
        elif path == "/fake.png":
            self._send(200, b"this is not a png at all", "image/png")
        elif path == "/missing.png":
            self._send(404, b"no", "text/plain")
        elif path == "/redirect":
            self._send(302, b"", None, {"Location": "/img.png"})
        elif path == "/redirect-other-host":
            # same server, other loopback address: the SSRF guard must check the redirect target again
            self._send(302, b"", None, {"Location": f"http://127.0.0.2:{self.server.server_address[1]}/img.png"})
        elif path == "/loop":
            self._send(302, b"", None, {"Location": "/loop"})
        elif path == "/slow":
            # headers at once, then a byte every 0.4 s: read timeouts never fire, the total deadline must
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.4)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/stall":
            time.sleep(5)  # no headers within the read timeout
            self._send(200, PNG, "image/png")
        elif path == "/big-chunked":
            # no Content-Length: the size cap must hold while streaming
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(64):  # 4 MB
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._send(404, b"unknown", "text/plain")


@pytest.fixture(scope="session")
def image_http() -> Iterator[str]:
    """Base URL of a local image server on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
