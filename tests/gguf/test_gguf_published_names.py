"""Issue 12 item 1 for GGUF-only rows: GGUF files are recognised by the names Jina publishes them under
(`<repo name without -GGUF>-<QUANT>.gguf`, or the HF cache folder `models--jinaai--<name>-GGUF`), whatever
the folder holding them is called, and served exactly as when the row is named."""

from __future__ import annotations

import shutil

import numpy as np

from jinaserve import Embedder

TEXTS = ["Berlin is the capital of Germany.", "def add(a, b): return a + b"]


def _encode(model: str, task: str) -> tuple[str, np.ndarray]:
    with Embedder(model, device="cpu", offline=True, threads=1) as emb:
        return emb.spec.family, emb.encode(TEXTS, task=task)


def test_published_file_name_in_a_neutral_folder(gguf_models, tmp_path):
    row = "jina-embeddings-v4-text-retrieval"
    neutral = tmp_path / "my-model"
    shutil.copytree(gguf_models["code"], neutral)
    (neutral / "code-F16.gguf").rename(neutral / f"{row}-F16.gguf")
    named = _encode(f"{row}={gguf_models['code'] / 'code-F16.gguf'}", "retrieval.query")
    for target in (neutral, neutral / f"{row}-F16.gguf"):  # the folder, or the file itself
        family, vectors = _encode(str(target), "retrieval.query")
        assert family == "gguf_text" == named[0]
        np.testing.assert_allclose(vectors, named[1], atol=1e-6)


def test_hf_cache_folder_name_of_the_gguf_repo(gguf_models, tmp_path):
    row = "jina-embeddings-v4-text-code"
    snap = tmp_path / "hub" / "models--jinaai--jina-embeddings-v4-text-code-GGUF" / "snapshots" / "abc"
    shutil.copytree(gguf_models["code"], snap)
    (snap / "code-F16.gguf").rename(snap / "model.gguf")  # even a renamed file: the cache path says it
    named = _encode(f"{row}={gguf_models['code'] / 'code-F16.gguf'}", "code.query")
    family, vectors = _encode(str(snap), "code.query")
    assert family == "gguf_text"
    np.testing.assert_allclose(vectors, named[1], atol=1e-6)
