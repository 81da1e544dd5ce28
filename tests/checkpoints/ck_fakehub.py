"""A minimal stand-in for the Hugging Face hub on 127.0.0.1 (the real one is unreachable here).

It answers what `huggingface_hub` asks for a download: the repo listing with file sizes and the model
card metadata (`GET /api/models/<repo>[/revision/<rev>]?blobs=true`) and each file
(`HEAD|GET /<repo>/resolve/<rev>/<path>`, with the commit and ETag headers the client checks). Every
request is recorded, so a test can tell which files were fetched and that nothing was asked at all.
A fixed status (403, 407, 503, ...) can be forced for every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, tuple[Path, dict]] = {}  # repo id -> (folder, cardData)
        self.requests: list[tuple[str, str]] = []
        self.force_status: int | None = None
        self.url = ""

    def add_repo(self, repo: str, folder: Path, licence: str | None = None) -> None:
        self.repos[repo] = (folder, {"license": licence} if licence else {})

    def files(self, repo: str) -> dict[str, Path]:
        folder = self.repos[repo][0]
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}

    def fetched(self) -> list[str]:
        return [path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path in self.requests
                if method == "GET" and "/resolve/" in path]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  head: bool = False) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _route(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(("HEAD" if head else "GET", path))
            if hub.force_status is not None:
                self._send(hub.force_status, b'{"error": "forced"}', {"Content-Type": "application/json"}, head)
                return
            if path.startswith("/api/models/") and "/tree/" in path:  # the listing snapshot_download asks
                repo = path[len("/api/models/"):].split("/tree/")[0]
                files = hub.files(repo) if repo in hub.repos else {}
                tree = [{"type": "file", "path": name, "size": p.stat().st_size,
                         "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for name, p in files.items()]
                self._send(200 if files else 404, json.dumps(tree).encode(), {"Content-Type": "application/json"},
                           head)
                return
            if path.startswith("/api/models/"):
                repo = path[len("/api/models/"):].split("/revision/")[0]
                if repo not in hub.repos:
                    self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)
                    return
                siblings = [{"rfilename": name, "size": p.stat().st_size} for name, p in hub.files(repo).items()]
                body = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings,
                                   "cardData": hub.repos[repo][1], "private": False}).encode()
                self._send(200, body, {"Content-Type": "application/json"}, head)
                return
            if "/resolve/" in path:
                repo, rest = path.lstrip("/").split("/resolve/", 1)
                name = rest.split("/", 1)[1] if "/" in rest else ""
                files = hub.files(repo) if repo in hub.repos else {}
                if name not in files:
                    self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                data = files[name].read_bytes()
                etag = hashlib.sha256(data).hexdigest()
                self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"',
                                       "Content-Type": "application/octet-stream"}, head)
                return
            self._send(200 if path == "/" else 404, b"hub", {"Content-Type": "text/plain"}, head)

        def do_GET(self) -> None:
            self._route(head=False)

        def do_HEAD(self) -> None:
            self._route(head=True)

    return Handler


@contextmanager
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
