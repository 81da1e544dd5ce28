import httpx
import numpy as np

from helpers import server_in_thread


def test_tiny_models_serve_both_endpoints(tiny_bert_path, tiny_cross_encoder_path):
    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"tiny-ce={tiny_cross_encoder_path}"]) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": ["a", "b c"]})
        assert r.status_code == 200, r.text
        vecs = np.array([d["embedding"] for d in r.json()["data"]])
        assert vecs.shape == (2, 32)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
        r = httpx.post(srv.url + "/v1/rerank", json={"model": "tiny-ce", "query": "q", "documents": ["x", "y z"]})
        assert r.status_code == 200, r.text
        scores = [x["relevance_score"] for x in r.json()["results"]]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
