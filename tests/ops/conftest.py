"""Fixtures for the operations tests: a fault-injecting family registered through the real
`models.FAMILIES` table, a figures report printed at the end of the run (and written to
build/ops-report.json)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ops_figures import FIGURES

from helpers import ROOT

# A real family subclass whose forward pass raises for inputs containing a marker token. It lives in a
# module file imported by name, as FAMILIES' "module:Class" entries are.
FAULTY_MODULE = '''
"""Test-only family: the generic sentence-transformers family, whose forward pass raises when a batch
holds the token ids of the marker word. Registered in jinaserve.models.FAMILIES by the ops tests."""
from jinaserve.models import FAMILIES
from jinaserve.models.sentence_transformer import SentenceTransformerFamily

MARKER = "kaboom"


class FaultyFamily(SentenceTransformerFamily):
    _marker_ids = None

    def run_batch(self, payloads):
        if self._marker_ids is None:
            ids = self.tokenizer(MARKER, add_special_tokens=False)["input_ids"]
            type(self)._marker_ids = list(ids)
        m = self._marker_ids
        for p in payloads:
            ids = list(p.ids)
            if any(ids[i:i + len(m)] == m for i in range(len(ids) - len(m) + 1)):
                raise RuntimeError("injected fault: marker in input")
        return super().run_batch(payloads)


FAMILIES["ops_faulty"] = "ops_faulty_family:FaultyFamily"
'''


@pytest.fixture(scope="session")
def faulty_family(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Registers family "ops_faulty" in jinaserve.models.FAMILIES; yields the marker word."""
    from jinaserve.models import FAMILIES

    d = tmp_path_factory.mktemp("ops-faulty")
    (d / "ops_faulty_family.py").write_text(textwrap.dedent(FAULTY_MODULE))
    sys.path.insert(0, str(d))
    module = importlib.import_module("ops_faulty_family")
    try:
        yield module.MARKER
    finally:
        FAMILIES.pop("ops_faulty", None)
        sys.path.remove(str(d))


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (96, 64), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


class DripServer(ThreadingHTTPServer):
    """An image host on 127.0.0.1 that answers at once with image headers, then sends one byte of the
    body every `interval` seconds (an unlucky client's slow CDN). `active` counts open downloads."""

    daemon_threads = True
    interval = 0.5

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _DripHandler)
        self.active = 0
        self.served = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/drip.png"

    @property
    def fast_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fast.png"


class _DripHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DripServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/fast.png"):  # a normal image host, for comparison
            body = _png()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with self.server.lock:
            self.server.active += 1
            self.server.served += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(240):  # at most 2 minutes
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(self.server.interval)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the downloader gave up: what it must do
        finally:
            with self.server.lock:
                self.server.active -= 1


@pytest.fixture(scope="session")
def drip_server() -> Iterator[DripServer]:
    server = DripServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("jinaserve ops figures")
    for name, values in FIGURES.items():
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    out = ROOT / "build" / "ops-report.json"
    try:
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=2) + "\n")
    except OSError:
        pass
