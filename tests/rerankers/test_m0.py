"""jina-reranker-m0 (text and image documents) on a tiny random-weight Qwen2-VL checkpoint in the published
layout.

Reference: transformers' own Qwen2VLForConditionalGeneration (the full model, vision tower included, its
own 3-D rotary positions) on the prompt transcribed from the published template, the score head applied
by hand. Tolerances: 1e-5 for text, 1e-6 for images (fp32; see the test)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

from jinaserve.images import InvalidImageError
from jinaserve.jobs import RerankDocument, RerankJob
from jinaserve.models.jina_reranker_m0 import JinaRerankerM0Family
from jinaserve.models.loading import LoadOptions
from jinaserve.models.resolve import resolve

TOL = 1e-5


@pytest.fixture(scope="module")
def m0(tiny_m0):
    path, native, head = tiny_m0
    ref = resolve(str(path))
    assert ref.spec.family == "jina_reranker_m0"  # detected from the JinaVLForRanking architecture
    opts = LoadOptions(device="cpu", dtype="float32", threads=1)
    return JinaRerankerM0Family.load(ref.spec, path, opts), native, head


@torch.no_grad()
def reference(fam, native, head, query: str, doc: str) -> float:
    ids = fam.tokenizer(f"**Document**:\n{doc}\n**Query**:\n{query}")["input_ids"] + [100]
    h = native.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    x = torch.relu(h @ head["score.0.weight"].T + head["score.0.bias"])
    x = x @ head["score.2.weight"].T + head["score.2.bias"]
    return float(torch.sigmoid(x - 2.65)[0])


def test_scores_match_full_model_and_head(m0):
    fam, native, head = m0
    docs = ["the cat sat on a mat", "dogs bark", "", "music in the park " * 20]
    job = RerankJob("m0", "cats", [RerankDocument(text=d) for d in docs])
    plan = fam.plan_rerank(job)
    batched = plan.assemble(fam.run_batch([it.payload for it in plan.items])).scores
    alone = plan.assemble([fam.run_batch([it.payload])[0] for it in plan.items]).scores
    expected = [reference(fam, native, head, "cats", d) for d in docs]
    np.testing.assert_allclose(batched, expected, atol=TOL)
    np.testing.assert_allclose(alone, expected, atol=TOL)
    assert all(0 < s < 1 for s in batched) and np.ptp(batched) > 1e-4


def png_data_uri(width: int, height: int, seed: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@torch.no_grad()
def image_reference(fam, native, head, query: str, uri: str) -> tuple[float, int]:
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 602112})
    out = proc(images=[img], return_tensors="pt")
    t, h, w = (int(x) for x in out["image_grid_thw"][0])
    n_pad = t * h * w // 4
    prompt = ("**Document**:\n<|vision_start|>" + "<|image_pad|>" * n_pad + "<|vision_end|>\n**Query**:\n" + query)
    ids = torch.tensor([fam.tokenizer(prompt)["input_ids"] + [100]])
    pad_id = fam.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((ids == pad_id).sum()) == n_pad
    h_last = native.model(input_ids=ids, pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"],
                          mm_token_type_ids=(ids == pad_id).int()).last_hidden_state[0, -1]
    x = torch.relu(h_last @ head["score.0.weight"].T + head["score.0.bias"])
    x = x @ head["score.2.weight"].T + head["score.2.bias"]
    return float(torch.sigmoid(x - 2.65)[0]), ids.shape[1]


def test_image_documents_match_full_model(m0):
    fam, native, head = m0
    assert fam.image_processor.size["longest_edge"] == 602112  # from the published preprocessor_config.json
    uris = [png_data_uri(200, 120, 0), png_data_uri(90, 250, 1)]
    docs = [RerankDocument(image=uris[0]), RerankDocument(text="the cat sat on a mat"), RerankDocument(image=uris[1])]
    plan = fam.plan_rerank(RerankJob("m0", "cats", docs))
    batched = plan.assemble(fam.run_batch([it.payload for it in plan.items])).scores
    alone = plan.assemble([fam.run_batch([it.payload])[0] for it in plan.items]).scores
    refs = [image_reference(fam, native, head, "cats", u) for u in uris]
    expected = [refs[0][0], reference(fam, native, head, "cats", "the cat sat on a mat"), refs[1][0]]
    # 1e-6: wrong (1-D) rotary positions for the vision tokens move these scores by ~2e-4
    np.testing.assert_allclose(alone, expected, atol=1e-6)
    np.testing.assert_allclose(batched, expected, atol=1e-6)
    assert [it.n_tokens for it in plan.items][::2] == [refs[0][1], refs[1][1]]
    assert abs(expected[0] - expected[2]) > 1e-5  # the pixels matter


def test_bad_image_documents_are_400(m0):
    fam = m0[0]
    with pytest.raises(InvalidImageError, match="index 1"):
        fam.plan_rerank(RerankJob("m0", "q", [RerankDocument(text="a"), RerankDocument(image="not an image")]))
