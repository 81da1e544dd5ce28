"""jina-reranker-m0 (text documents) on a tiny random-weight Qwen2-VL checkpoint in the published layout.

Reference: transformers' own Qwen2VLForConditionalGeneration (the full model, vision tower included) on the
prompt transcribed from the published template, the score head applied by hand. Tolerance 1e-5 (fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jinaserve.errors import InvalidInputError
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
    return JinaRerankerM0Family.load(ref.spec, path, LoadOptions(device="cpu", threads=1)), native, head


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


def test_image_documents_are_refused_clearly(m0):
    fam = m0[0]
    with pytest.raises(InvalidInputError, match="text documents only"):
        fam.plan_rerank(RerankJob("m0", "q", [RerankDocument(image="https://example.com/a.png")]))
