"""Pooling: the functions on hand-made tensors (left and right padding), and the generic bi-encoder
family reading cls / last-token pooling from a checkpoint folder, batched versus alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import copy_bert_tokenizer
from jinaserve import Embedder
from jinaserve.models.pooling import pool
from jinaserve.models.sentence_transformer import read_st_layout
from jinaserve.runtimes.torch_runtime import pad_batch

TEXTS = ["a", "short one", "a somewhat longer sentence with more words", "x y", "the end of the list here"]
ATOL = 1e-5  # fp32; padding only changes summation order inside attention


def _padded(lengths: list[int], side: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    seqs = [torch.randn(n, 4) for n in lengths]
    ids, mask = pad_batch([[1] * n for n in lengths], 0, side=side)
    hidden = torch.full((len(lengths), ids.shape[1], 4), 99.0)  # padding positions hold garbage
    for i, s in enumerate(seqs):
        n = len(s)
        if side == "left":
            hidden[i, ids.shape[1] - n:] = s
        else:
            hidden[i, :n] = s
    return hidden, mask, seqs


@pytest.mark.parametrize("side", ["left", "right"])
def test_pool_functions(side):
    hidden, mask, seqs = _padded([3, 1, 5], side)
    torch.testing.assert_close(pool("cls", hidden, mask), torch.stack([s[0] for s in seqs]))
    torch.testing.assert_close(pool("last", hidden, mask), torch.stack([s[-1] for s in seqs]))
    torch.testing.assert_close(pool("mean", hidden, mask), torch.stack([s.mean(0) for s in seqs]))
    torch.testing.assert_close(pool("max", hidden, mask), torch.stack([s.max(0).values for s in seqs]))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool("median", hidden, mask)


def test_pad_batch_sides():
    ids, mask = pad_batch([[5, 6, 7], [8]], 0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[5, 6, 7], [8]], 0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _reference(model_cls, folder: Path, texts: list[str], pick) -> np.ndarray:
    """Each text alone through the plain transformers model (no padding), pooled by `pick`, L2-normalised."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = model_cls.from_pretrained(str(folder)).eval()
    out = []
    with torch.inference_mode():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            v = pick(h).numpy()
            out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_cls_pooling_from_folder(tiny_cls_path):
    from transformers import BertModel

    assert read_st_layout(tiny_cls_path)["pooling"] == "cls"
    with Embedder(str(tiny_cls_path), device="cpu") as emb:
        assert emb.spec.pooling == "cls"
        batched = emb.encode(TEXTS)
        alone = np.stack([emb.encode(t) for t in TEXTS])
    ref = _reference(BertModel, tiny_cls_path, TEXTS, lambda h: h[0])
    np.testing.assert_allclose(batched, alone, atol=ATOL)
    np.testing.assert_allclose(batched, ref, atol=ATOL)


def build_tiny_qwen3(dst: Path, padding_side: str) -> Path:
    """A 2-layer Qwen3 (RoPE, so left padding is exact) with last-token pooling in ST layout."""
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(3)
    dst.mkdir(parents=True, exist_ok=True)
    cfg = Qwen3Config(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                      pad_token_id=0)
    Qwen3Model(cfg).save_pretrained(dst)
    copy_bert_tokenizer(dst)
    tc = json.loads((dst / "tokenizer_config.json").read_text())
    tc["padding_side"] = padding_side
    (dst / "tokenizer_config.json").write_text(json.dumps(tc))
    (dst / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (dst / "1_Pooling").mkdir(exist_ok=True)
    (dst / "2_Normalize").mkdir(exist_ok=True)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_lasttoken": True, "pooling_mode_mean_tokens": False}))
    return dst


@pytest.fixture(scope="module")
def qwen_folders(tmp_path_factory) -> dict[str, Path]:
    left = build_tiny_qwen3(tmp_path_factory.mktemp("qwen-left"), "left")
    right = tmp_path_factory.mktemp("qwen-right")
    shutil.copytree(left, right, dirs_exist_ok=True)
    tc = json.loads((right / "tokenizer_config.json").read_text())
    tc["padding_side"] = "right"
    (right / "tokenizer_config.json").write_text(json.dumps(tc))
    return {"left": left, "right": right}


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_left_and_right_padding(qwen_folders, side):
    from transformers import Qwen3Model

    folder = qwen_folders[side]
    with Embedder(str(folder), device="cpu") as emb:
        assert emb.spec.pooling == "last"
        assert emb._service.family.padding_side == side
        batched = emb.encode(TEXTS)
        alone = np.stack([emb.encode(t) for t in TEXTS])
    ref = _reference(Qwen3Model, folder, TEXTS, lambda h: h[-1])
    np.testing.assert_allclose(batched, alone, atol=ATOL)
    np.testing.assert_allclose(batched, ref, atol=ATOL)
