"""Session fixtures: one tiny jina-embeddings-v3 in the -hf layout and the same weights in the remote layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from v3_builders import TinyV3, build_hf_checkpoint, build_remote_checkpoint

from helpers import torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # tiny models: one thread is fastest, and the machine is shared
        yield


@pytest.fixture(scope="session")
def v3_hf(tmp_path_factory: pytest.TempPathFactory) -> TinyV3:
    return build_hf_checkpoint(tmp_path_factory.mktemp("v3-hf"))


@pytest.fixture(scope="session")
def v3_remote(v3_hf: TinyV3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_remote_checkpoint(v3_hf, tmp_path_factory.mktemp("v3-remote"))
