"""Fixtures for the reranker tests: tiny random-weight checkpoints in the published layouts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rr_builders import build_tiny_v2, build_tiny_v3


@pytest.fixture(scope="session")
def tiny_v3_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_v3(tmp_path_factory.mktemp("tiny-v3"))


@pytest.fixture(scope="session")
def tiny_v3_separate_projector_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_v3(tmp_path_factory.mktemp("tiny-v3-proj"), seed=3, separate_projector=True)


@pytest.fixture(scope="session")
def tiny_v2(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_v2(tmp_path_factory.mktemp("tiny-v2"))


@pytest.fixture(scope="session")
def tiny_m0(tmp_path_factory: pytest.TempPathFactory):
    from rr_builders import build_tiny_m0

    return build_tiny_m0(tmp_path_factory.mktemp("tiny-m0"))
