"""Odd label sets (hypothesis) against a real server: duplicates, empty and whitespace labels, unicode and
lone surrogates, very long labels, wrong types, huge lists and too many groups. A valid set (rules restated
here: 1..512 distinct non-blank strings of at most 4096 characters, or 1..8 named groups of 1..64) gets a 200
whose predictions are exactly its labels; anything else a 422 in the hosted error shape; never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
from cls_common import V5
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

LABEL = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["a", "b", "a ", " ", "", "\t\n", "é", "日本語", "🙂", "\u200b", "null"]),  # duplicates likely
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates ("\ud800" in JSON)
    st.integers(4090, 4100).map(lambda n: "x" * n),  # around the length cap
)
VALUE = st.one_of(LABEL, LABEL, LABEL, st.integers(), st.none(), st.booleans(),
                  st.lists(st.text(max_size=2), max_size=2))
HUGE = st.integers(0, 600).map(lambda n: [f"label {i}" for i in range(n)])
GROUPS = st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["", " ", "topic"])),
                         st.one_of(st.lists(VALUE, max_size=5), st.integers(60, 70).map(lambda n: [f"g{i}" for i in
                                                                                                range(n)]),
                                   st.text(max_size=3), st.none()), max_size=10)
LABELS = st.one_of(st.lists(VALUE, max_size=6), st.lists(LABEL, min_size=1, max_size=6, unique=True), HUGE, GROUPS,
                   st.text(max_size=5), st.integers(), st.none())


def valid_label(x: Any) -> bool:
    if not isinstance(x, str) or not x.strip() or len(x) > 4096:
        return False
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_list(xs: Any, limit: int) -> bool:
    return (isinstance(xs, list) and 1 <= len(xs) <= limit and all(valid_label(x) for x in xs)
            and len(set(xs)) == len(xs))


def expected_valid(labels: Any) -> bool:
    if isinstance(labels, list):
        return valid_list(labels, 512)
    if isinstance(labels, dict):
        return 1 <= len(labels) <= 8 and all(name.strip() and valid_list(v, 64) for name, v in labels.items())
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(labels=LABELS)
def test_odd_label_sets_get_a_4xx_never_a_5xx(cls_server, labels):
    body = json.dumps({"model": V5, "input": ["some text", "more"], "labels": labels})  # \ud800 escapes allowed
    labels = json.loads(body)["labels"]  # what the server reads: an escaped high+low surrogate pair is one character
    r = httpx.post(cls_server.url + "/v1/classify", content=body, headers={"Content-Type": "application/json"},
                   timeout=120)
    assert r.status_code < 500, r.text
    event(f"valid={expected_valid(labels)}")
    if expected_valid(labels):
        assert r.status_code == 200, r.text
        for item in r.json()["data"]:
            groups = labels if isinstance(labels, dict) else {None: labels}
            for name, group in groups.items():
                preds = item["predictions"] if name is None else item["predictions"][name]
                assert [p["label"] for p in preds] == group
                assert abs(sum(p["score"] for p in preds) - 1) < 1e-6
                assert np.isfinite([p["score"] for p in preds]).all()
    else:
        assert r.status_code == 422, r.text
        err = r.json()
        assert isinstance(err["detail"], str)
        assert err["code"] in {"INPUT_VALIDATION_FAILED", "INPUT_LABEL_LIMIT_EXCEEDED"}
        assert len(r.content) < 20_000  # a bad huge list does not echo itself back
