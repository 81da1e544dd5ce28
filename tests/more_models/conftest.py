"""Fixtures: tiny jina-clip / jina-colbert / jina-reranker-v1 checkpoints in the published layouts, each in a
neutrally named folder (`ckpt-*`), so recognition from the files alone is exercised everywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mm_builders import (
    Built,
    build_clip_v1,
    build_clip_v2,
    build_colbert_v1,
    build_colbert_v2,
    build_reranker_v1,
    load_service,
)

from helpers import RunningServer, server_in_thread, torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # tiny models: one thread is fastest, and the machine is shared
        yield


@pytest.fixture(scope="session")
def mm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("more-models")


@pytest.fixture(scope="session")
def clip_v1(mm_root: Path) -> Built:
    return build_clip_v1(mm_root / "ckpt-a")


@pytest.fixture(scope="session")
def clip_v2(mm_root: Path) -> Built:
    return build_clip_v2(mm_root / "ckpt-b")


@pytest.fixture(scope="session")
def colbert_v1(mm_root: Path) -> Built:
    return build_colbert_v1(mm_root / "ckpt-c")


@pytest.fixture(scope="session")
def colbert_v2(mm_root: Path) -> Built:
    return build_colbert_v2(mm_root / "ckpt-d")


@pytest.fixture(scope="session")
def reranker_v1(mm_root: Path) -> Built:
    return build_reranker_v1(mm_root / "ckpt-e")


@pytest.fixture(scope="session")
def services(clip_v1, clip_v2, colbert_v1, colbert_v2, reranker_v1):
    out = {name: load_service(b.folder) for name, b in (("clip_v1", clip_v1), ("clip_v2", clip_v2),
                                                          ("colbert_v1", colbert_v1), ("colbert_v2", colbert_v2),
                                                          ("reranker_v1", reranker_v1))}
    yield out
    for svc in out.values():
        svc.close()


@pytest.fixture(scope="session")
def server(clip_v1, clip_v2, colbert_v1, colbert_v2, reranker_v1, mm_root: Path) -> Iterator[RunningServer]:
    """One server for the HTTP tests of this folder: the five folders served by path alone (no `NAME=`), with its
    own data dir (its batch jobs run here, not in another test server holding a shared store's lock)."""
    folders = [b.folder for b in (clip_v1, clip_v2, colbert_v1, colbert_v2, reranker_v1)]
    with server_in_thread(models=[str(f) for f in folders], data_dir=str(mm_root / "data")) as srv:
        yield srv
