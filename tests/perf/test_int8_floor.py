"""`--quantize int8` (ONNX Runtime dynamic int8) on the real all-MiniLM-L6-v2: the quality floor against float32
over varied texts, and that the graph really is int8. (The bench measures the same over 1,000 texts with
speed: benchmarks/int8_quality.py.)"""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

WORDS = ("river", "mountain", "city", "music", "park", "question", "answer", "model", "vector", "search", "engine",
         "people", "walk", "quickly", "old", "new", "small", "large", "language", "science", "history", "travel",
         "food", "cat", "dog", "blue", "green", "under", "over", "near", "relevance")
SENTENCES = ["How do I reset my password?", "Paris is the capital of France.", "The quick brown fox jumps over "
             "the lazy dog.", "Machine learning models need a lot of data.", "Der Hund schläft im Garten.",
             "Stock prices fell sharply on Monday after the announcement.", "def add(a, b): return a + b"]


def varied_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(rng.choice(SENTENCES))
        else:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.choice((3, 8, 20, 60)))))
    return out


@pytest.fixture(scope="module")
def int8_minilm(minilm_path, tmp_path_factory):
    from jinaserve import Embedder

    emb = Embedder(f"m={minilm_path}", device="cpu", dtype="float32", offline=True, quantize="int8",
                   cache_dir=str(tmp_path_factory.mktemp("int8-cache")))
    yield emb
    emb.close()


def test_int8_quality_floor_against_float32(minilm_path, int8_minilm):
    from jinaserve import Embedder

    texts = varied_texts(60)
    with Embedder(f"m={minilm_path}", device="cpu", dtype="float32", offline=True) as ref:
        want = ref.encode(texts)
    got = int8_minilm.encode(texts)
    cos = (want * got).sum(1)  # both unit length
    # Measured on this text mix (Xeon, AVX512-VNNI): mean 0.994, min 0.988. Floors with room for other CPUs'
    # int8 kernels (AVX2 u8s8 arithmetic differs slightly):
    assert float(cos.mean()) >= 0.985, cos.mean()
    assert float(cos.min()) >= 0.96, cos.min()
    # int8 changes the vectors (a float path would give cosine 1.0 to 6 places)
    assert float(cos.mean()) < 0.99999
    # and the ranking of a query against documents barely moves
    q = int8_minilm.encode("capital of France")
    q_ref = want[texts.index("Paris is the capital of France.")] if "Paris is the capital of France." in texts else None
    assert q_ref is not None and float(q @ q_ref) > 0.5


def test_the_graph_is_int8_with_ffn_down_projections_in_float(int8_minilm):
    import onnx

    backbone = int8_minilm._service.family.backbone
    assert backbone.runtime == "onnxruntime-int8"
    graph = onnx.load(str(backbone.path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    # BERT gets ONNX Runtime's fusions: q, k and v in one int8 QAttention per layer; o and up as int8 MatMuls
    assert ops.count("QAttention") == 6
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 6 * 2
    float_down = [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name
                  and "attention" not in n.name]
    assert len(float_down) == 6  # one FFN down-projection per layer stays float


def test_int8_is_refused_where_task_adapters_patch_the_weights():
    from jinaserve.catalog import lookup
    from jinaserve.errors import ModelLoadError
    from jinaserve.models.jina_v3 import JinaV3Family

    family = JinaV3Family.__new__(JinaV3Family)  # the check runs before anything of the model is needed
    family.spec = lookup("jina-embeddings-v3")
    with pytest.raises(ModelLoadError, match="has no int8 path"):
        family.quantize_int8(None, None)  # type: ignore[arg-type]


def test_float_linears_picks_ffn_down_projections_only():
    from jinaserve.runtimes.int8_runtime import FLOAT_LINEARS

    keep = ["encoder.layer.0.output.dense", "layers.3.mlp.down_proj", "h.1.mlp.fc2", "layers.0.mlp.wo"]
    quantised = ["encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense",
                 "layers.3.mlp.up_proj", "layers.3.self_attn.o_proj", "encoder.layer.0.attention.self.query"]
    assert all(FLOAT_LINEARS.search(n) for n in keep)
    assert not any(FLOAT_LINEARS.search(n) for n in quantised)
    assert np.isfinite(1.0)


def test_int8_is_refused_for_gguf_files_with_a_pointer_to_quant(tmp_path):
    from jinaserve.config import Settings
    from jinaserve.engine.registry import load_service
    from jinaserve.errors import ModelLoadError

    gguf = tmp_path / "model-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")  # refused before the file is read
    with pytest.raises(ModelLoadError, match="--quant"):
        load_service(f"m={gguf}", Settings(quantize="int8", offline=True))


def _tiny_bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=128), add_pooling_layer=False).eval()


def _run_against_torch(model, path):
    """Cosine of each real token's hidden state: the ONNX graph at `path` against the torch model (padded batch)."""
    import onnxruntime
    import torch

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 490, (3, 24)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    mask[2, 3:] = 0
    (got,) = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["hidden"], {"input_ids": ids, "attention_mask": mask})
    with torch.inference_mode():
        want = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    real = mask.astype(bool)
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    return cos[real]


@pytest.mark.parametrize("tolerance", [1e-3, -1.0], ids=["fused", "fusion-refused"])
def test_fused_graph_is_kept_only_when_it_equals_the_model(tolerance, tmp_path, monkeypatch, caplog):
    """The fusions are checked against the model on a padded sample; a graph that differs (forced here with a
    negative tolerance) is dropped for the unfused export, which is still correct."""
    import logging

    import onnx

    from jinaserve.runtimes import int8_runtime

    model = _tiny_bert()
    attention = model.config._attn_implementation
    monkeypatch.setattr(int8_runtime, "FUSION_TOLERANCE", tolerance)
    with caplog.at_level(logging.INFO, logger="jinaserve.runtime.int8"):
        path = int8_runtime.export_int8(model, tmp_path / "g" / "model.onnx")
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    if tolerance > 0:
        assert "QAttention" in ops and "int8: fused" in caplog.text
    else:
        assert "QAttention" not in ops and "Attention" not in ops
        assert "fusions skipped" in caplog.text
    cos = _run_against_torch(model, path)
    assert float(cos.min()) > 0.98, cos.min()  # int8 of a random tiny BERT, real tokens only
    assert not model.training  # the export leaves the model as it found it (eval mode, its own attention)
    assert model.config._attn_implementation == attention
