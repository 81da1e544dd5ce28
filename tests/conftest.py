"""Shared fixtures. Sub-folders (one per area) add their own conftest.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Servers started by tests keep their store (batch jobs, classifiers) out of the user's data folder.
os.environ.setdefault("JINASERVE_DATA_DIR", tempfile.mkdtemp(prefix="jinaserve-test-data-"))
# The suite compares vectors with independent float32 references at tight tolerances (cosine ≥ 0.9999), so
# every model loads in float32 (Settings, `Embedder` / `Reranker`, servers in threads and subprocesses), whatever
# `--dtype auto` would pick on this CPU (bf16 where it is native and faster). Tests of `auto` set it themselves;
# direct `Family.load(...)` calls pass LoadOptions(dtype="float32").
os.environ.setdefault("JINASERVE_DTYPE", "float32")

from helpers import ROOT, build_tiny_bert, minilm_dir


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return minilm_dir()


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-ce"), cross_encoder=True, seed=1)


@pytest.fixture(scope="session")
def tiny_v4_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight jina-embeddings-v4 in the published layout (tests/v4/tiny_v4.py), shared by the
    v4 and the ops tests."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "v4"))
    from tiny_v4 import build_tiny_v4

    return build_tiny_v4(tmp_path_factory.mktemp("tiny-v4"))


def _mm_builders():
    """tests/more_models/mm_builders.py (tiny jina-clip / jina-colbert checkpoints in the published layouts)."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "more_models"))
    import mm_builders

    return mm_builders


@pytest.fixture(scope="session")
def tiny_clip_v2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight jina-clip-v2 in its published layout, in a neutrally named folder."""
    return _mm_builders().build_clip_v2(tmp_path_factory.mktemp("tiny-clip") / "ckpt-clip").folder


@pytest.fixture(scope="session")
def tiny_colbert_v2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight jina-colbert-v2 in its published layout, in a neutrally named folder."""
    return _mm_builders().build_colbert_v2(tmp_path_factory.mktemp("tiny-colbert") / "ckpt-colbert").folder
