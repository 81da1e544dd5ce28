"""The in-process API (`Embedder`, `Reranker`) on the new models, loaded from their neutral folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jinaserve import Embedder, Reranker


def test_clip_embedder_text_and_images(clip_v2, services):
    img = Image.fromarray(np.random.default_rng(5).integers(0, 255, (36, 50, 3), dtype=np.uint8))
    with Embedder(str(clip_v2.folder), device="cpu", offline=True) as emb:
        text = emb.encode(["a photo", "a cat"], task="retrieval.query", dimensions=64)
        image = emb.encode_image([img])
    assert text.shape == (2, 64) and image.shape == (1, 128)
    fam = services["clip_v2"].family
    from jinaserve.jobs import EmbedInput, EmbedOptions

    ref = services["clip_v2"].embed_sync([EmbedInput(image=img)], EmbedOptions(in_process=True)).vectors[0]
    np.testing.assert_allclose(image[0], ref, atol=1e-5)
    assert fam.spec.dims == 128


def test_colbert_embedder_and_rerankers(colbert_v2, reranker_v1):
    with Embedder(str(colbert_v2.folder), device="cpu", offline=True) as emb:
        q = emb.encode_multivector("capital of France?", task="retrieval.query", dimensions=64)[0]
        d = emb.encode_multivector(["Paris is the capital of France."])[0]
        with pytest.raises(ValueError, match="encode_multivector"):
            emb.encode(["one vector per text is not what ColBERT gives"])
    assert q.shape == (32, 64) and d.shape[1] == 128
    with Reranker(str(colbert_v2.folder), device="cpu", offline=True) as rr:
        ranked = rr.rerank("capital of France?", ["Paris is the capital of France.", "bananas"], top_n=1)
    assert len(ranked) == 1 and ranked[0]["index"] in (0, 1)
    with Reranker(str(reranker_v1.folder), device="cpu", offline=True) as rr:
        scores = rr.score("what do cats eat?", ["fish", "taxes"])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
