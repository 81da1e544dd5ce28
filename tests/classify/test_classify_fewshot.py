"""Few-shot classifiers over HTTP: POST /v1/train learns a toy set (labels without meaning: only the examples
teach them), an update with classifier_id keeps learning (a new label, old ones kept), /v1/classify with
classifier_id, GET /v1/classifiers, DELETE, images on v4, per-API-key ownership and access, the cap on stored
classifiers, and every refusal in the hosted error shape."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from cls_common import MINILM, V4, classify, embed, scores_of, train
from tiny_v4 import PNG, PNG2

from helpers import minilm_dir, server_in_thread

ANIMALS = ["A dog barked at the mailman.", "The cat slept on the warm windowsill.",
           "A horse galloped across the field.", "The parrot repeated every word it heard."]
VEHICLES = ["The truck delivered gravel to the site.", "She rode her bicycle to work.",
            "The train left the station at noon.", "A motorbike roared down the highway."]
FOOD = ["Bake the bread for forty minutes.", "The soup needs more salt and pepper.",
        "Slice the tomatoes and add fresh basil.", "Whisk the eggs with sugar until fluffy."]
HELD = {"X": ["The wolf howled at the moon.", "A rabbit hopped into its burrow."],
        "Y": ["The bus was late again this morning.", "The airplane landed on the runway."],
        "Z": ["Stir the risotto slowly while adding broth.", "Fry the garlic in olive oil."]}


def items(texts: list[str], label: str) -> list[dict]:
    return [{"text": t, "label": label} for t in texts]


def predictions(srv, classifier_id: str, texts: list[str], **kw) -> list[str]:
    r = classify(srv, {"classifier_id": classifier_id, "input": texts}, **kw)
    assert r.status_code == 200, r.text
    return [d["prediction"] for d in r.json()["data"]]


def test_train_classify_update_list_delete(cls_server):
    r = train(cls_server, {"model": MINILM, "input": items(ANIMALS, "X") + items(VEHICLES, "Y"), "num_iters": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["classifier_id", "num_samples", "usage"] and body["num_samples"] == 8
    assert body["usage"]["total_tokens"] == embed(cls_server, MINILM, ANIMALS + VEHICLES)[1]
    cid = body["classifier_id"]

    r = classify(cls_server, {"classifier_id": cid, "input": HELD["X"] + HELD["Y"]})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["prediction"] for d in data] == ["X", "X", "Y", "Y"]
    for d in data:
        names, scores = scores_of(d)
        assert names == ["X", "Y"] and abs(scores.sum() - 1) < 1e-6 and d["score"] == scores.max() > 0.5
    assert r.json()["usage"]["total_tokens"] == embed(cls_server, MINILM, HELD["X"] + HELD["Y"])[1]

    # update: a new label from its examples alone; the old labels stay right
    r = train(cls_server, {"classifier_id": cid, "input": items(FOOD, "Z")})
    assert r.status_code == 200, r.text
    assert r.json()["classifier_id"] == cid and r.json()["num_samples"] == 4
    held = [t for texts in HELD.values() for t in texts]
    assert predictions(cls_server, cid, held) == ["X", "X", "Y", "Y", "Z", "Z"]
    assert predictions(cls_server, cid, ANIMALS + VEHICLES + FOOD) == ["X"] * 4 + ["Y"] * 4 + ["Z"] * 4
    # a single item (not a list) also updates
    assert train(cls_server, {"classifier_id": cid, "input": {"text": "A goat ate the grass.", "label": "X"}}
                 ).status_code == 200

    listed = {c["classifier_id"]: c for c in httpx.get(cls_server.url + "/v1/classifiers", timeout=30).json()}
    mine = listed[cid]
    assert mine["model"] == MINILM and mine["labels"] == ["X", "Y", "Z"] and mine["access"] == "public"
    assert mine["updated_number"] == 2 and mine["used_number"] == 3 and mine["metadata_"]["num_samples"] == 13
    assert mine["user_id"] == "00000000-0000-0000-0000-000000000000"  # no API keys: one shared owner
    for key in ("created_at", "updated_at", "used_at"):
        assert mine[key].endswith("+00:00")

    r = httpx.delete(f"{cls_server.url}/v1/classifiers/{cid}", timeout=30)
    assert r.status_code == 200 and r.json() == {"classifier_id": cid, "deleted": True}
    for resp in (httpx.delete(f"{cls_server.url}/v1/classifiers/{cid}", timeout=30),
                 classify(cls_server, {"classifier_id": cid, "input": "x"}),
                 train(cls_server, {"classifier_id": cid, "input": items(FOOD[:1], "Z")})):
        assert resp.status_code == 404 and resp.json()["code"] == "RESOURCE_NOT_FOUND", resp.text
        assert cid in resp.json()["detail"]


def test_images_train_and_classify_on_a_model_that_takes_them(cls_server):
    red, green = base64.b64encode(PNG).decode(), base64.b64encode(PNG2).decode()
    r = train(cls_server, {"model": V4, "input": [{"image": red, "label": "red"}, {"image": green, "label": "green"},
                                                  {"text": "a red square", "label": "red"}], "access": "private"})
    assert r.status_code == 200, r.text
    got = predictions(cls_server, r.json()["classifier_id"], [{"image": green}, f"data:image/png;base64,{red}"])
    assert got == ["green", "red"]
    r = train(cls_server, {"model": MINILM, "input": [{"image": red, "label": "a"}, {"text": "b", "label": "b"}]})
    assert r.status_code == 422 and MINILM in r.json()["detail"] and V4 in r.json()["detail"]


@pytest.mark.parametrize(("body", "status", "code", "needle"), [
    ({"input": items(ANIMALS, "only")}, 400, "INPUT_INVALID_LABELS", "at least two different labels"),
    ({"input": [{"text": "a"}, {"text": "b", "label": "B"}]}, 422, "INPUT_VALIDATION_FAILED", "input -> 0 -> label"),
    ({"input": [{"text": "a", "image": "x", "label": "A"}]}, 422, "INPUT_VALIDATION_FAILED", "exactly one"),
    ({"input": ["just text"]}, 422, "INPUT_VALIDATION_FAILED", "training item"),
    ({"input": []}, 422, "INPUT_VALIDATION_FAILED", "at least 1"),
    ({"input": items(["t"] * 513, "A")}, 422, "INPUT_VALIDATION_FAILED", "at most 512"),
    ({"input": [{"text": "a", "label": ""}, {"text": "b", "label": "B"}]}, 422, "INPUT_VALIDATION_FAILED",
     "must not be empty"),
    ({"input": [{"text": "a", "label": f"L{i}"} for i in range(257)]}, 422, "INPUT_LABEL_LIMIT_EXCEEDED",
     "at most 256"),
    ({"input": items(ANIMALS[:1], "A") + items(VEHICLES[:1], "B"), "num_iters": 0}, 422, "INPUT_VALIDATION_FAILED",
     "between 1 and 100"),
    ({"input": items(ANIMALS[:1], "A") + items(VEHICLES[:1], "B"), "num_iters": 101}, 422,
     "INPUT_VALIDATION_FAILED", "between 1 and 100"),
    ({"input": items(ANIMALS[:1], "A") + items(VEHICLES[:1], "B"), "access": "secret"}, 422,
     "INPUT_VALIDATION_FAILED", "access"),
    ({"model": "nope", "input": items(ANIMALS[:1], "A") + items(VEHICLES[:1], "B")}, 400, "INPUT_MODEL_NOT_FOUND",
     "nope"),
    ({"classifier_id": "00000000-dead-beef-0000-000000000000", "input": items(FOOD[:1], "Z")}, 404,
     "RESOURCE_NOT_FOUND", "not found"),
])
def test_train_refusals(cls_server, body, status, code, needle):
    r = train(cls_server, {"model": MINILM, **body})
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and needle in r.json()["detail"], r.json()["detail"]


def test_classifiers_belong_to_api_keys_and_are_capped(tmp_path):
    """Key A's private classifier is invisible to key B; a public one B may use but not change or delete;
    each key may keep at most max_classifiers."""
    with server_in_thread(models=[f"{MINILM}={minilm_dir()}"], device="cpu", data_dir=str(tmp_path),
                          api_keys=["key-a", "key-b"], max_classifiers=2) as srv:
        a, b = ({"Authorization": f"Bearer {k}"} for k in ("key-a", "key-b"))
        toy = {"model": MINILM, "input": items(ANIMALS[:2], "X") + items(VEHICLES[:2], "Y")}
        private = train(srv, {**toy, "access": "private"}, headers=a).json()["classifier_id"]
        public = train(srv, toy, headers=a).json()["classifier_id"]
        r = train(srv, toy, headers=a)
        assert r.status_code == 403 and r.json()["code"] == "AUTHZ_RESOURCE_LIMIT_EXCEEDED", r.text
        assert "at most 2" in r.json()["detail"] and "DELETE /v1/classifiers" in r.json()["detail"]
        assert train(srv, toy, headers=b).status_code == 200  # the cap is per key

        assert classify(srv, {"classifier_id": private, "input": "x"}, headers=b).status_code == 404
        assert predictions(srv, public, HELD["X"], headers=b) == ["X", "X"]
        assert predictions(srv, private, HELD["Y"], headers=a) == ["Y", "Y"]
        assert train(srv, {"classifier_id": public, "input": items(FOOD, "Z")}, headers=b).status_code == 404
        assert httpx.delete(f"{srv.url}/v1/classifiers/{public}", headers=b, timeout=30).status_code == 404
        mine = httpx.get(srv.url + "/v1/classifiers", headers=a, timeout=30).json()
        theirs = httpx.post(srv.url + "/v1/classifiers", headers=b, timeout=30).json()  # POST lists too
        assert {c["classifier_id"] for c in mine} == {private, public} and len(theirs) == 1
        assert len({c["user_id"] for c in mine + theirs}) == 2 and "key-a" not in str(mine)
        assert httpx.get(srv.url + "/v1/classifiers", timeout=30).status_code == 401
        assert httpx.delete(f"{srv.url}/v1/classifiers/{public}", headers=a, timeout=30).status_code == 200
        assert train(srv, toy, headers=a).status_code == 200  # room again


def test_scores_are_the_classifier_probabilities_of_the_embeddings(cls_server):
    """Predicting twice gives the same scores; scores depend on the input only (one input alone or in a batch)."""
    cid = train(cls_server, {"model": MINILM, "input": items(ANIMALS, "X") + items(VEHICLES, "Y")}).json()[
        "classifier_id"]
    both = classify(cls_server, {"classifier_id": cid, "input": HELD["X"]}).json()["data"]
    alone = classify(cls_server, {"classifier_id": cid, "input": HELD["X"][1]}).json()["data"]
    np.testing.assert_allclose(scores_of(alone[0])[1], scores_of(both[1])[1], atol=1e-6)
    assert httpx.delete(f"{cls_server.url}/v1/classifiers/{cid}", timeout=30).status_code == 200
