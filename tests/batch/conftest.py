"""Batch job fixtures: one shared in-thread server on its own data directory, and a local HTTP server on
127.0.0.1 that serves input files and records webhook calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import RunningServer, minilm_dir, server_in_thread


@pytest.fixture(scope="session")
def batch_server(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path,
                 tiny_cross_encoder_path: Path) -> Iterator[RunningServer]:
    """MiniLM (real weights), a tiny bi-encoder and a tiny cross-encoder; private URLs allowed so jobs can
    read inputs from and call webhooks on 127.0.0.1."""
    data = tmp_path_factory.mktemp("batch-data")
    with server_in_thread(models=[f"minilm={minilm_dir()}", f"tiny={tiny_bert_path}",
                                  f"tiny-ce={tiny_cross_encoder_path}"],
                          data_dir=str(data), batch_allow_private_urls=True) as srv:
        yield srv


class LocalHTTP:
    """Files to serve (path → bytes) and webhook calls received (path → list of JSON bodies); `fail_first`
    makes the first N POSTs to a path answer 500."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: dict[str, list[dict]] = {}
        self.fail_first: dict[str, int] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                data = owner.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                owner.calls.setdefault(self.path, []).append(body)
                failing = owner.fail_first.get(self.path, 0) >= len(owner.calls[self.path])
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="session")
def local_http() -> Iterator[LocalHTTP]:
    srv = LocalHTTP()
    yield srv
    srv.close()
