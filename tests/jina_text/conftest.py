"""Fixtures: tiny checkpoints of every Jina text family, in the published layouts (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jt_builders import build_code, build_v2, build_v5_nano, build_v5_small


@pytest.fixture(scope="session")
def v5_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_v5_small(tmp_path_factory.mktemp("v5-small") / "jina-embeddings-v5-text-small")


@pytest.fixture(scope="session")
def v5_nano_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_v5_nano(tmp_path_factory.mktemp("v5-nano") / "jina-embeddings-v5-text-nano")


@pytest.fixture(scope="session")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_code(tmp_path_factory.mktemp("code") / "jina-code-embeddings-0.5b")


@pytest.fixture(scope="session")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_v2(tmp_path_factory.mktemp("v2") / "jina-embeddings-v2-base-en")


@pytest.fixture(scope="session")
def v2_code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # qk-post-norm layout, saved under a `bert.` prefix (both forms exist in the wild)
    return build_v2(tmp_path_factory.mktemp("v2code") / "jina-embeddings-v2-base-code", qk_post_norm=True,
                    prefix="bert.", seed=4)
