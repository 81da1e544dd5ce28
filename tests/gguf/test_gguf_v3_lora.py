"""jina-embeddings-v3 on llama.cpp: the base GGUF + the per-task LoRA GGUFs llama.cpp's converter writes.

Tolerance: per-vector cosine to the torch path (the -hf layout with PEFT adapters) ≥ 0.999 for the F16
files, for every task and without a task. llama.cpp ignores the token-type LoRA the converter writes;
jinaserve folds it into the word-embedding LoRA (`runtimes.gguf_lora`), and the test shows it matters.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import gguf
from jinaserve import Embedder
from jinaserve.errors import ModelLoadError, ModelNotFoundError
from jinaserve.runtimes.gguf_lora import fold_token_type_lora
from jinaserve.runtimes.llamacpp_runtime import LlamaCppBackbone

MIN_COS = 0.999
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
TEXTS = ["Berlin is the capital of Germany; Paris is the capital of France.", "hello world",
         "The quick brown fox jumps over the lazy dog near the river bank."]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def v3_vectors(gguf_models) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{task: (torch, llama.cpp)} for every task and None."""
    out = {}
    with Embedder(f"jina-embeddings-v3={gguf_models['v3_torch']}", device="cpu", offline=True, threads=1) as ref, \
            Embedder(f"jina-embeddings-v3={gguf_models['v3'] / 'v3-F16.gguf'}", device="cpu", offline=True,
                     threads=1) as got:
        assert got._service.family.runtime == "llamacpp"
        assert got._service.family.model.arch == "jina-bert-v3"
        for task in [*TASKS, None]:
            out[str(task)] = (ref.encode(TEXTS, task=task), got.encode(TEXTS, task=task))
    return out


@pytest.mark.parametrize("task", [*TASKS, "None"])
def test_v3_task_loras_match_torch(v3_vectors, task):
    ref, got = v3_vectors[task]
    assert _cos(got, ref).min() >= MIN_COS, _cos(got, ref)


def test_v3_tasks_reach_the_network(v3_vectors):
    """Each task's adapter changes the vectors (prefix-free tasks too: only the LoRA differs)."""
    sep, cls = v3_vectors["separation"][1], v3_vectors["classification"][1]
    none = v3_vectors["None"][1]
    assert _cos(sep, cls).max() < 0.99 and _cos(sep, none).max() < 0.99


def test_type_lora_fold_is_needed_and_exact(gguf_models, tmp_path):
    """Without the fold (the converter's adapter as llama.cpp applies it) `separation` drifts from torch; the
    folded file has rank r+1 on token_embd and no token-type pair."""
    src = gguf_models["v3"] / "lora-separation-v3-F16.gguf"
    folded = tmp_path / src.name
    assert fold_token_type_lora(src, folded)
    names = {t.name: t for t in gguf.GGUFReader(str(folded)).tensors}
    assert not any(n.startswith("token_types.") for n in names)
    before = {t.name: t for t in gguf.GGUFReader(str(src)).tensors}
    assert names["token_embd.weight.lora_b"].data.shape[-1] == before["token_embd.weight.lora_b"].data.shape[-1] + 1
    assert not fold_token_type_lora(folded, tmp_path / "again.gguf")  # nothing left to fold

    with Embedder(f"jina-embeddings-v3={gguf_models['v3_torch']}", device="cpu", offline=True, threads=1) as emb:
        ref = emb.encode(TEXTS, task="separation")
    backbone = LlamaCppBackbone(gguf_models["v3"] / "v3-F16.gguf", threads=1)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf_models["v3"]))
        ids = tok(TEXTS)["input_ids"]

        def pooled(key, adapter_file):
            backbone.add_adapter(key, adapter_file)
            backbone.activate(key)
            return np.stack([h.mean(0) for h in backbone.hidden_states(ids)])

        raw, fixed = pooled("raw", src), pooled("folded", folded)
    finally:
        backbone.close()
    assert _cos(fixed, ref).min() >= MIN_COS
    assert _cos(raw, ref).min() < 0.99  # llama.cpp alone misses the token-type delta


def test_v3_missing_adapter_files_and_no_catalog_gguf(gguf_models, tmp_path):
    only_base = tmp_path / "base"
    only_base.mkdir()
    shutil.copy(gguf_models["v3"] / "v3-F16.gguf", only_base / "v3-F16.gguf")
    with pytest.raises(ModelLoadError, match=r"no LoRA GGUF for .*lora-<task>-v3-F16\.gguf"):
        Embedder(f"jina-embeddings-v3={only_base / 'v3-F16.gguf'}", device="cpu", offline=True, threads=1)
    with pytest.raises(ModelNotFoundError, match="gguf_convert"):
        Embedder("jina-embeddings-v3", device="cpu", offline=True, threads=1, runtime="llamacpp")
