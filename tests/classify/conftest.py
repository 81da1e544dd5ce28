"""Fixtures of the classification tests: one real server (uvicorn on 127.0.0.1) serving the real MiniLM, a
tiny jina-embeddings-v4 (images) and a tiny jina-embeddings-v5-text-small (task adapters), all in their
published layouts, with its own data directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("v4", "jina_text"):  # the builders of those areas (no package: put their folders on the path)
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from cls_common import MINILM, V4, V5  # noqa: E402
from jt_builders import build_v5_small  # noqa: E402
from tiny_v4 import build_tiny_v4  # noqa: E402

from helpers import minilm_dir, server_in_thread  # noqa: E402


@pytest.fixture(scope="session")
def cls_v4_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_v4(tmp_path_factory.mktemp("cls-v4"))


@pytest.fixture(scope="session")
def cls_v5_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_v5_small(tmp_path_factory.mktemp("cls-v5") / V5)


@pytest.fixture(scope="session")
def cls_server(cls_v4_path: Path, cls_v5_path: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("cls-data")
    with server_in_thread(models=[f"{MINILM}={minilm_dir()}", f"{V4}={cls_v4_path}", f"{V5}={cls_v5_path}"],
                          device="cpu", data_dir=str(data_dir)) as srv:
        srv.data_dir = data_dir
        yield srv
