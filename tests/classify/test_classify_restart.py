"""A trained classifier survives the server process: `jinaserve serve --data-dir D` as a real subprocess,
killed with SIGKILL (no shutdown code runs) right after /v1/train answered, then started again on D."""

from __future__ import annotations

import httpx
import numpy as np
from cls_common import MINILM, classify, scores_of, train

from helpers import minilm_dir, server_process

EXAMPLES = [("The kitten chased a ball of yarn.", "pets"), ("My dog loves long walks.", "pets"),
            ("Interest rates rose again this quarter.", "money"), ("The bank approved the loan.", "money")]
PROBES = ["A puppy chewed my slippers.", "Stocks rallied after the earnings report."]


def test_classifier_survives_kill_and_restart_on_the_same_data_dir(tmp_path):
    args = ("--models", f"{MINILM}={minilm_dir()}", "--data-dir", str(tmp_path / "store"), "--device", "cpu")
    with server_process(*args) as srv:
        r = train(srv, {"model": MINILM, "input": [{"text": t, "label": lab} for t, lab in EXAMPLES]})
        assert r.status_code == 200, r.text
        cid = r.json()["classifier_id"]
        before = classify(srv, {"classifier_id": cid, "input": PROBES}).json()["data"]
        srv.process.kill()  # SIGKILL: whatever /v1/train answered must already be on disk
        srv.process.wait(timeout=30)
    assert (tmp_path / "store" / "jinaserve.db").is_file()

    with server_process(*args) as srv:
        listed = httpx.get(srv.url + "/v1/classifiers", timeout=30).json()
        assert [c["classifier_id"] for c in listed] == [cid] and listed[0]["labels"] == ["pets", "money"]
        after = classify(srv, {"classifier_id": cid, "input": PROBES}).json()["data"]
        assert [d["prediction"] for d in after] == [d["prediction"] for d in before] == ["pets", "money"]
        for b, a in zip(before, after, strict=True):
            np.testing.assert_allclose(scores_of(a)[1], scores_of(b)[1], atol=1e-6)  # same weights, same model
        # and it keeps learning after the restart
        weather = ["The weather is sunny today.", "Heavy rain is expected tonight."]
        r = train(srv, {"classifier_id": cid, "input": [{"text": t, "label": "weather"} for t in weather]})
        assert r.status_code == 200, r.text
        got = classify(srv, {"classifier_id": cid, "input": [*PROBES, "A storm is coming with strong winds."]})
        assert [d["prediction"] for d in got.json()["data"]] == ["pets", "money", "weather"]
        srv.process.kill()  # nothing left to check: skip the graceful drain
