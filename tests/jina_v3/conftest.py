"""Session fixtures: one tiny jina-embeddings-v3 in the -hf layout and the same weights in the remote layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from v3_builders import TinyV3, build_hf_checkpoint, build_remote_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is fastest, and the test machine is shared (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def v3_hf(tmp_path_factory: pytest.TempPathFactory) -> TinyV3:
    return build_hf_checkpoint(tmp_path_factory.mktemp("v3-hf"))


@pytest.fixture(scope="session")
def v3_remote(v3_hf: TinyV3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_remote_checkpoint(v3_hf, tmp_path_factory.mktemp("v3-remote"))
