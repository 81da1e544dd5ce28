"""Session fixtures: one tiny jina-embeddings-v3 in the -hf layout and the same weights in the remote layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from builders import TinyV3, build_hf_checkpoint, build_remote_checkpoint

torch.set_num_threads(1)  # tiny models: one thread is fastest, and the test machine is shared


@pytest.fixture(scope="session")
def v3_hf(tmp_path_factory: pytest.TempPathFactory) -> TinyV3:
    return build_hf_checkpoint(tmp_path_factory.mktemp("v3-hf"))


@pytest.fixture(scope="session")
def v3_remote(v3_hf: TinyV3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_remote_checkpoint(v3_hf, tmp_path_factory.mktemp("v3-remote"))
