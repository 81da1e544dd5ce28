"""The in-process API: `Embedder.classify` gives the same answer as /v1/classify, and a classifier trained
with `Embedder.train_classifier` lives in the same store a server on that data_dir uses."""

from __future__ import annotations

import numpy as np
from cls_common import MINILM, classify, scores_of

from helpers import minilm_dir
from jinaserve import Embedder

TEXTS = ["The goalkeeper saved a penalty in extra time.", "Inflation slowed for the third month."]
LABELS = {"topic": ["sports", "economy"], "mood": ["happy", "sad"]}


def test_embedder_classify_matches_http_and_shares_the_store(cls_server):
    with Embedder(f"{MINILM}={minilm_dir()}", device="cpu", data_dir=str(cls_server.data_dir)) as emb:
        local = emb.classify(TEXTS, labels=LABELS)
        remote = classify(cls_server, {"model": MINILM, "input": TEXTS, "labels": LABELS}).json()["data"]
        assert [d["prediction"] for d in local] == [d["prediction"] for d in remote]
        for a, b in zip(local, remote, strict=True):
            assert list(a) == ["index", "prediction", "score", "predictions"]
            for group in LABELS:
                np.testing.assert_allclose(scores_of(a, group)[1], scores_of(b, group)[1], atol=1e-6)
        assert [d["prediction"] for d in emb.classify("A tennis match", labels=["sports", "cooking"])] == ["sports"]

        cid = emb.train_classifier(["I adore this", "What a delight", "I hate this", "Truly awful"],
                                   ["up", "up", "down", "down"])
        assert [d["prediction"] for d in emb.classify(["Lovely!", "Dreadful."], classifier_id=cid)] == ["up", "down"]
        over_http = classify(cls_server, {"classifier_id": cid, "input": ["Lovely!", "Dreadful."]}).json()["data"]
        assert [d["prediction"] for d in over_http] == ["up", "down"]
        emb.delete_classifier(cid)
        assert classify(cls_server, {"classifier_id": cid, "input": "x"}).status_code == 404
