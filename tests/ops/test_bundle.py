"""Offline bundles: `jinaserve bundle` writes weights + manifest; an air-gapped server (the container entry
point with JINASERVE_BUNDLE) serves them with networking cut off for the process: a sitecustomize guard
refuses, and records, every socket connection or name lookup that is not loopback."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, free_port, wait_ready

GUARD = textwrap.dedent('''
    """Network guard (tests): only loopback connections and look-ups are allowed; others are refused
    and written to $NET_GUARD_LOG."""
    import ipaddress
    import os
    import socket

    _LOG = os.environ["NET_GUARD_LOG"]
    _LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "", None}


    def _note(kind, target):
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {kind} {target!r}\\n")


    def _check(sock, address):
        if sock.family == socket.AF_UNIX:
            return
        host = address[0] if isinstance(address, tuple) else address
        if host not in _LOCAL and not str(host).startswith("127."):
            _note("BLOCKED-connect", address)
            raise ConnectionRefusedError(f"network guard: outbound connection to {address!r} refused")


    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo


    def connect(self, address):
        _check(self, address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)


    def getaddrinfo(host, *args, **kwargs):
        h = host.decode() if isinstance(host, bytes) else host
        try:
            ipaddress.ip_address(h)  # a literal address needs no look-up; connect() checks it
            literal = True
        except ValueError:
            literal = False
        if not literal and h not in _LOCAL:
            _note("BLOCKED-lookup", h)
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {h!r} refused")
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    _note("loaded", None)
''')


@pytest.fixture(autouse=True, scope="module")
def _keep_root_logging() -> Iterator[None]:
    """The CLI sets up logging on the root logger, bound to CliRunner's stream, which closes after each
    invoke: put the root logger back so later in-process servers do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def bundle_dir(tiny_bert_path, tiny_cross_encoder_path, tmp_path_factory) -> Path:
    from jinaserve.cli import app

    out = tmp_path_factory.mktemp("bundle") / "b"
    models = f"tiny={tiny_bert_path},all-MiniLM-L6-v2,tiny-ce={tiny_cross_encoder_path}"
    r = CliRunner().invoke(app, ["bundle", "--models", models, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_bundle_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["format"] == "jinaserve-bundle" and manifest["format_version"] == 1
    by_name = {m["name"]: m for m in manifest["models"]}
    assert set(by_name) == {"tiny", "all-MiniLM-L6-v2", "tiny-ce"}
    assert by_name["all-MiniLM-L6-v2"]["catalog_id"] == "all-MiniLM-L6-v2"
    assert by_name["tiny"]["catalog_id"] is None and by_name["tiny-ce"]["kind"] == "rerank"
    for m in manifest["models"]:
        folder = bundle_dir / m["path"]
        assert {"config.json", "tokenizer.json"} <= set(m["files"])
        assert any(f.endswith(".safetensors") for f in m["files"])
        for rel, info in m["files"].items():
            f = folder / rel
            assert f.is_file() and not f.is_symlink() and f.stat().st_size == info["size"]


def test_air_gapped_serve_from_bundle(bundle_dir, tmp_path, minilm_path):
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    keys = tmp_path / "keys"
    keys.write_text("sk-airgap\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JINASERVE_", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))}
    env.update({"PYTHONPATH": str(guard_dir), "NET_GUARD_LOG": str(log), "JINASERVE_BUNDLE": str(bundle_dir),
                "JINASERVE_HOST": "127.0.0.1", "JINASERVE_PORT": str(port), "JINASERVE_THREADS": "1",
                "JINASERVE_API_KEYS_FILE": str(keys), "JINASERVE_BIN": str(Path(sys.executable).parent / "jinaserve"),
                "HF_HOME": str(tmp_path / "empty-hf-home")})  # nothing cached: only the bundle can serve
    proc = subprocess.Popen(["sh", str(ROOT / "docker" / "entrypoint.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, timeout=180, proc=proc)
        assert ready["status"] == "ready", ready
        assert set(ready["models"]) == {"tiny", "all-MiniLM-L6-v2", "tiny-ce"}
        auth = {"Authorization": "Bearer sk-airgap"}
        assert httpx.post(url + "/v1/embeddings", json={"model": "tiny", "input": "x"}).status_code == 401
        r = httpx.post(url + "/v1/embeddings", headers=auth, timeout=60,
                       json={"model": "all-MiniLM-L6-v2", "input": ["an air-gapped host", "serves"]})
        assert r.status_code == 200, r.text
        vec = np.array(r.json()["data"][0]["embedding"])
        assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4
        r = httpx.post(url + "/v1/rerank", headers=auth,
                       json={"model": "tiny-ce", "query": "q", "documents": ["a", "b"]})
        assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    lines = log.read_text().splitlines()
    assert any(" loaded " in line for line in lines), "the guard was not active in the server process"
    blocked = [line for line in lines if "BLOCKED" in line]
    assert blocked == [], f"outbound attempts: {blocked}\n{output[-2000:]}"


def test_guard_catches_outbound_attempts(tmp_path):
    """Control: the guard used above does refuse and record a non-loopback connection and look-up."""
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    code = ("import socket\n"
            "for f in (lambda: socket.create_connection(('10.255.255.1', 443), timeout=1),\n"
            "          lambda: socket.getaddrinfo('huggingface.co', 443)):\n"
            "    try:\n        f()\n    except OSError:\n        pass\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(guard_dir),
                                                       "NET_GUARD_LOG": str(log)}, check=True, timeout=30)
    text = log.read_text()
    assert "BLOCKED-connect ('10.255.255.1', 443)" in text and "BLOCKED-lookup 'huggingface.co'" in text


def test_verify_and_tampering(bundle_dir):
    from jinaserve.bundle import BundleError, bundle_model_args
    from jinaserve.cli import app
    from jinaserve.config import Settings

    runner = CliRunner()
    assert runner.invoke(app, ["bundle", "--verify", str(bundle_dir)]).exit_code == 0
    settings = Settings(bundle=str(bundle_dir))
    assert settings.offline is True and len(settings.models) == 3
    assert Settings(bundle=str(bundle_dir), models=["tiny=/elsewhere"]).models == ["tiny=/elsewhere"]

    target = bundle_dir / "models" / "tiny" / "tokenizer_config.json"
    original = target.read_bytes()
    try:
        target.write_bytes(original.replace(b"{", b"{ ", 1))  # one byte longer
        r = runner.invoke(app, ["bundle", "--verify", str(bundle_dir)])
        assert r.exit_code == 1 and "tokenizer_config.json" in r.output
        with pytest.raises(BundleError, match="does not match its manifest"):
            bundle_model_args(bundle_dir)
        target.write_bytes(original[:-1] + b"X")  # same size, different bytes: only SHA-256 sees it
        assert runner.invoke(app, ["bundle", "--verify", str(bundle_dir)]).exit_code == 1
    finally:
        target.write_bytes(original)
    assert runner.invoke(app, ["bundle", "--verify", str(bundle_dir)]).exit_code == 0
    r = runner.invoke(app, ["bundle", "--models", "tiny=/nonexistent-folder-xyz", "--out", str(bundle_dir)])
    assert r.exit_code == 1 and "already holds a bundle" in r.output
    with pytest.raises(BundleError, match="not a jinaserve bundle"):
        bundle_model_args(bundle_dir.parent / "missing")
