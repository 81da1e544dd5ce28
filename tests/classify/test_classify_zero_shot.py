"""Zero-shot POST /v1/classify over HTTP against a real server: the hosted response shape, scores equal to an
independent reference (softmax over cosines of /v1/embeddings vectors, computed here with numpy), the tasks
each model uses for inputs and labels, images on a model that takes them (and a 422 on one that does not),
limits, and the label-embedding cache (forward passes counted on /metrics)."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cls_common import MINILM, V4, V5, classify, embed, metric, scores_of
from tiny_v4 import PNG, PNG2

B64, B64_2 = base64.b64encode(PNG).decode(), base64.b64encode(PNG2).decode()
SCORE_TOL = 1e-5  # float32 vectors on both paths; cosines agree to ~1e-7, softmax keeps that


def reference(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """softmax over cosine similarities, temperature 1 (docs/classify.md), per input row."""
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (labels / np.linalg.norm(labels, axis=1, keepdims=True)).T
    e = np.exp(cos - cos.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def inputs_total(srv, model: str) -> float:
    return metric(srv, "jinaserve_inputs_total", model=model)


TEXTS = ["The striker scored twice and the team won the cup final.",
         "Shares fell after the central bank raised interest rates.",
         "Simmer the onions in butter until golden, then add the garlic."]
LABELS = ["sports", "finance", "cooking"]


def test_hosted_shape_and_scores_equal_the_reference(cls_server):
    r = classify(cls_server, {"model": MINILM, "input": TEXTS, "labels": LABELS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["usage", "data"] and list(body["usage"]) == ["total_tokens"]
    x, x_tokens = embed(cls_server, MINILM, TEXTS)
    lab, lab_tokens = embed(cls_server, MINILM, LABELS)
    expected = reference(x, lab)
    for i, item in enumerate(body["data"]):
        assert list(item) == ["object", "index", "prediction", "score", "predictions"]
        assert item["object"] == "classification" and item["index"] == i
        names, scores = scores_of(item)
        assert names == LABELS  # label order, not sorted by score
        np.testing.assert_allclose(scores, expected[i], atol=SCORE_TOL)
        assert abs(scores.sum() - 1) < 1e-6
        assert item["prediction"] == LABELS[int(np.argmax(scores))] and item["score"] == scores.max()
    # the real MiniLM puts each text in its obvious class
    assert [d["prediction"] for d in body["data"]] == LABELS
    # usage counts the inputs' and the labels' tokens (the hosted example: 2 inputs + 3 labels = 19 tokens)
    assert body["usage"]["total_tokens"] == x_tokens + lab_tokens


def test_grouped_labels_are_classified_per_group(cls_server):
    groups = {"topic": ["sports", "finance", "cooking"], "tone": ["good news", "bad news"],
              "again": ["sports", "weather"]}  # a label may sit in several groups
    r = classify(cls_server, {"model": MINILM, "input": TEXTS[:2], "labels": groups})
    assert r.status_code == 200, r.text
    x, _ = embed(cls_server, MINILM, TEXTS[:2])
    for name, labels in groups.items():
        expected = reference(x, embed(cls_server, MINILM, labels)[0])
        for i, item in enumerate(r.json()["data"]):
            assert list(item["prediction"]) == list(groups) == list(item["score"]) == list(item["predictions"])
            names, scores = scores_of(item, name)
            assert names == labels
            np.testing.assert_allclose(scores, expected[i], atol=SCORE_TOL)
            assert item["prediction"][name] == labels[int(np.argmax(scores))]
            assert item["score"][name] == pytest.approx(scores.max())


def test_task_model_uses_its_classification_task(cls_server):
    """v5-text: inputs and labels through the classification adapter; the same formula with the default
    text-matching adapter gives other scores, so the comparison can tell the tasks apart."""
    texts, labels = ["a cat sits on a mat", "stock prices fell"], ["animals", "money", "weather"]
    r = classify(cls_server, {"model": V5, "input": texts, "labels": labels})
    assert r.status_code == 200, r.text
    got = np.array([scores_of(d)[1] for d in r.json()["data"]])

    def ref(task: str) -> np.ndarray:
        return reference(embed(cls_server, V5, texts, task)[0], embed(cls_server, V5, labels, task)[0])

    right, wrong = ref("classification"), ref("text-matching")
    np.testing.assert_allclose(got, right, atol=SCORE_TOL)
    assert np.abs(got - wrong).max() > 1e-3


def test_images_on_a_model_that_takes_them(cls_server):
    """v4: images (base64, data URI) and text in one request; labels embedded as retrieval queries, inputs
    as retrieval passages."""
    inputs = [{"image": B64}, "a red square", f"data:image/png;base64,{B64_2}", {"text": "green"}]
    labels = ["red", "green", "blue"]
    r = classify(cls_server, {"model": V4, "input": inputs, "labels": labels})
    assert r.status_code == 200, r.text
    got = np.array([scores_of(d)[1] for d in r.json()["data"]])
    x, _ = embed(cls_server, V4, [{"image": B64}, "a red square", {"image": B64_2}, "green"], "retrieval.passage")
    np.testing.assert_allclose(got, reference(x, embed(cls_server, V4, labels, "retrieval.query")[0]), atol=SCORE_TOL)
    same_task = reference(embed(cls_server, V4, [{"image": B64}, "a red square", {"image": B64_2}, "green"],
                                "text-matching")[0], embed(cls_server, V4, labels, "text-matching")[0])
    assert np.abs(got - same_task).max() > 1e-3


def test_text_only_model_refuses_images_naming_the_model(cls_server):
    r = classify(cls_server, {"model": MINILM, "input": ["text", {"image": B64}], "labels": ["a", "b"]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["errors"][0]["field"] == "body -> input -> 1"
    assert MINILM in body["detail"] and V4 in body["detail"]  # names the model, and the served one that can


@pytest.mark.parametrize(("body", "status", "code", "needle"), [
    ({"input": ["x"] * 513, "labels": ["a", "b"]}, 422, "INPUT_VALIDATION_FAILED", "at most 512 items"),
    ({"input": "x", "labels": [f"l{i}" for i in range(513)]}, 422, "INPUT_LABEL_LIMIT_EXCEEDED", "at most 512"),
    ({"input": "x", "labels": {f"g{i}": ["a"] for i in range(9)}}, 422, "INPUT_LABEL_LIMIT_EXCEEDED", "at most 8"),
    ({"input": "x", "labels": {"g": [f"l{i}" for i in range(65)]}}, 422, "INPUT_LABEL_LIMIT_EXCEEDED", "at most 64"),
    ({"input": "x", "labels": ["a", "b", "a"]}, 422, "INPUT_VALIDATION_FAILED", "Duplicate label 'a'"),
    ({"input": "x"}, 422, "INPUT_VALIDATION_FAILED", "labels"),
    ({"input": "x", "labels": ["a"], "classifier_id": "c"}, 422, "INPUT_VALIDATION_FAILED", "not both"),
    ({"labels": ["a", "b"]}, 422, "INPUT_VALIDATION_FAILED", "input"),
    ({"model": "no-such-model", "input": "x", "labels": ["a"]}, 400, "INPUT_MODEL_NOT_FOUND", "no-such-model"),
    ({"input": "x", "classifier_id": "c" * 100_000}, 404, "RESOURCE_NOT_FOUND", "not found or access denied"),
])
def test_errors_name_the_limit_in_the_hosted_shape(cls_server, body, status, code, needle):
    r = classify(cls_server, {"model": MINILM, **body})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["code"] == code == err["error"]["code"] and needle in err["detail"]
    assert isinstance(err["detail"], str) and err["request_id"]
    assert len(r.content) < 2000  # short, whatever the request sent


def test_label_embeddings_are_computed_once_per_model_task_and_label(cls_server):
    """Forward inputs counted by the model's jinaserve_inputs_total: labels cost a forward pass only the first
    time a (model, task, label) is seen; inputs every time."""
    tag = uuid.uuid4().hex[:8]  # fresh labels: nothing cached from other tests
    labels = [f"alpha {tag}", f"beta {tag}", f"gamma {tag}"]
    texts = ["first text", "second text"]

    def cost(model: str, body: dict) -> float:
        before = inputs_total(cls_server, model)
        assert classify(cls_server, {"model": model, **body}).status_code == 200
        return inputs_total(cls_server, model) - before

    assert cost(V5, {"input": texts, "labels": labels}) == 2 + 3
    assert cost(V5, {"input": texts, "labels": labels}) == 2  # all three labels cached
    assert cost(V5, {"input": texts, "labels": [labels[2], f"delta {tag}"]}) == 2 + 1
    assert cost(V5, {"input": texts, "labels": {"g1": labels[:2], "g2": labels[1:]}}) == 2
    assert cost(MINILM, {"input": texts, "labels": labels}) == 2 + 3  # another model: its own embeddings


def test_concurrent_requests_share_one_label_computation(cls_server):
    tag = uuid.uuid4().hex[:8]
    labels = [f"label {i} {tag}" for i in range(24)]
    before = inputs_total(cls_server, V5)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: classify(cls_server, {"model": V5, "input": f"text {i}",
                                                                   "labels": labels}), range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert inputs_total(cls_server, V5) - before == 8 + len(labels)
    first = np.array([scores_of(r.json()["data"][0])[1] for r in responses])
    assert np.all(np.abs(first.sum(axis=1) - 1) < 1e-6)
