"""Foundation fixtures: servers shared by many tests (session scope keeps the suite fast)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from foundation_keys import API_KEYS

from helpers import RunningServer, build_tiny_bert, server_in_thread

MINILM = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def main_server(tiny_bert_path: Path, tiny_cross_encoder_path: Path) -> Iterator[RunningServer]:
    """One real uvicorn on 127.0.0.1 serving the real MiniLM (catalog id; its bundled copy, offline),
    a tiny random bi-encoder and a tiny random cross-encoder."""
    with server_in_thread(models=[MINILM, f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}"]) as srv:
        yield srv


@pytest.fixture(scope="session")
def guarded_server(tiny_bert_path: Path) -> Iterator[RunningServer]:
    """API keys on, small limits: body 4 KiB, 4 inputs per request, 2 queued items."""
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], api_keys=list(API_KEYS), max_body_bytes=4096,
                          max_inputs_per_request=4, max_documents_per_request=4, max_queue_items=2) as srv:
        yield srv


@pytest.fixture(scope="session")
def tiny_cls_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-cls"), pooling="cls", seed=2)
