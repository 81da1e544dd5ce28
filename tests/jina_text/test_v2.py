"""jina-embeddings-v2 (JinaBERT, ALiBi): the in-project backbone against a float64 forward written
op by op from the published layouts, mean pooling, fp32 only.

Tolerance: max abs difference 1e-5 per coordinate of unit vectors (fp32 model vs float64 reference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jt_builders import V2_DIMS
from refs import embed, jinabert_mean_vector, service

from jinaserve.errors import ValidationFailedError
from jinaserve.models.jinabert import JinaBertModel, alibi_slopes

ATOL = 1e-5
TEXTS = ["A man is eating food.", "hello", "The new movie is awesome and very long indeed"]


@pytest.fixture(scope="module", params=["base-en", "base-code"])
def v2(request, v2_dir, v2_code_dir):
    folder = v2_dir if request.param == "base-en" else v2_code_dir
    with service(f"jina-embeddings-v2-{request.param}", folder) as svc:
        yield request.param, folder, svc


def test_matches_the_handwritten_forward(v2):
    variant, folder, svc = v2
    assert svc.family.model.config.qk_post_norm == (variant == "base-code")
    tok = svc.family.tokenizer
    ref = np.stack([jinabert_mean_vector(folder, tok(t)["input_ids"], heads=V2_DIMS["heads"],
                                         qk_post_norm=variant == "base-code") for t in TEXTS])
    np.testing.assert_allclose(embed(svc, TEXTS), ref, atol=ATOL)
    # padded batch == singles (mean pooling over the mask, padded keys masked out)
    singles = np.stack([embed(svc, [t])[0] for t in TEXTS])
    np.testing.assert_allclose(embed(svc, TEXTS), singles, atol=ATOL)


def test_fp32_only_and_hosted_fields(v2):
    _, _, svc = v2
    assert next(svc.family.model.parameters()).dtype == torch.float32
    # hosted v2 has no task / dimensions: a task (pymilvus sends one) and dimensions are ignored
    base = embed(svc, TEXTS)
    np.testing.assert_allclose(embed(svc, TEXTS, task="retrieval.passage"), base, atol=1e-6)
    assert embed(svc, TEXTS, dimensions=8).shape == base.shape
    assert not np.allclose(np.linalg.norm(embed(svc, TEXTS, normalized=False), axis=1), 1)
    with pytest.raises(ValidationFailedError):
        embed(svc, TEXTS, late_chunking=True)


def test_fp32_even_when_half_precision_is_asked(v2_dir):
    from jinaserve.catalog import lookup
    from jinaserve.models.jina_v2 import JinaV2Family
    from jinaserve.models.loading import LoadOptions

    fam = JinaV2Family.load(lookup("jina-embeddings-v2-base-en"), v2_dir, LoadOptions(device="cpu", dtype="float16"))
    assert next(fam.model.parameters()).dtype == torch.float32


def test_alibi_slopes():
    # powers of two: the geometric series 2^(-8k/n)
    assert alibi_slopes(8) == pytest.approx([2 ** (-k) for k in range(1, 9)])
    # 12 heads (v2-base): the 8 slopes of 8 heads, then every other slope of 16 heads
    s16 = [2 ** (-0.5 * k) for k in range(1, 17)]
    assert alibi_slopes(12) == pytest.approx([2 ** (-k) for k in range(1, 9)] + s16[0::2][:4])


def test_layout_mismatch_is_a_clear_error(tmp_path, v2_dir):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(v2_dir, broken)
    sd = load_file(str(broken / "model.safetensors"))
    sd["encoder.layer.0.mlp.gate.weight"] = sd.pop("encoder.layer.0.mlp.gated_layers.weight")
    save_file(sd, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match="gated_layers"):
        JinaBertModel.from_folder(broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["position_embedding_type"] = "absolute"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="alibi"):
        JinaBertModel.from_folder(broken)


def test_blockwise_bias_equals_one_block(v2, monkeypatch):
    """The attention bias is built per block of query rows; tiny blocks give the same vectors."""
    from jinaserve.models.jinabert import AlibiBias

    _, _, svc = v2
    whole = embed(svc, TEXTS)
    monkeypatch.setattr(AlibiBias, "max_block_elements", 1)  # one query row per block
    np.testing.assert_allclose(embed(svc, TEXTS), whole, atol=1e-6)
