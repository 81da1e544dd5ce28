"""One server for every protocol test: the real MiniLM (the default embedding model), a tiny
jina-embeddings-v5-text-small (tasks), a tiny jina-embeddings-v4 (images, per-token vectors) and a tiny
cross-encoder (the default reranker), with an API key so that each client's key recipe is exercised too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from proto_refs import CE, KEY, MINILM, V4, V5

from helpers import RunningServer, server_in_thread
from jina_text.jt_builders import build_v5_small
from v4.tiny_v4 import build_tiny_v4


@pytest.fixture(scope="session")
def proto_server(tmp_path_factory: pytest.TempPathFactory, tiny_cross_encoder_path: Path) -> Iterator[RunningServer]:
    v5 = build_v5_small(tmp_path_factory.mktemp("proto-v5") / V5)
    v4 = build_tiny_v4(tmp_path_factory.mktemp("proto-v4") / V4)
    models = [MINILM, f"{V5}={v5}", f"{V4}={v4}", f"{CE}={tiny_cross_encoder_path}"]
    with server_in_thread(models=models, api_keys=[KEY], device="cpu", threads=1) as srv:
        yield srv
