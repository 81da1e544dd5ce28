"""The Jina batch API end to end over HTTP: inline and input_url jobs, vectors equal to /v1/embeddings,
errors file, webhooks (retried), cancel, expiry and cleanup, and the error shapes."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from batch_helpers import direct_vectors, wait_job

from helpers import minilm_dir, server_in_thread

TEXTS = ["The cat sat on the mat.", "Embeddings map text to vectors.", "A quick brown fox.", "Paris is in France."]


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_inline_job_matches_online_embeddings_and_reports_bad_lines(batch_server):
    with batch_server.client() as c:
        items = [{"custom_id": "first", "body": {"input": TEXTS[0]}}, TEXTS[1], {"text": TEXTS[2]},
                 {"custom_id": "pair", "body": {"input": TEXTS[2:]}}, {"custom_id": "bad", "body": {"input": 7}}]
        r = c.post("/v1/batch/embeddings", json={"model": "minilm", "input": items, "dimensions": 64})
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["status"] in ("pending", "processing") and created["stats"]["total"] == 5
        status = wait_job(c, f"/v1/batch/{created['batch_id']}")
        assert status["status"] == "completed"
        assert status["stats"] | {} == {"total": 5, "completed": 4, "failed": 1,
                                        "total_tokens": status["stats"]["total_tokens"]}
        out = {line["custom_id"]: line for line in _lines(c.get(f"/v1/batch/{created['batch_id']}/output").text)}
        assert sorted(out) == ["1", "2", "first", "pair"]
        online = c.post("/v1/embeddings", json={"model": "minilm", "input": [TEXTS[0]], "dimensions": 64}).json()
        body = out["first"]["response"]["body"]
        assert out["first"]["response"]["status_code"] == 200 and body["usage"] == online["usage"]
        np.testing.assert_allclose(body["data"][0]["embedding"], online["data"][0]["embedding"], atol=1e-6)
        got = np.array([d["embedding"] for d in out["pair"]["response"]["body"]["data"]])
        np.testing.assert_allclose(got, direct_vectors(c, "minilm", TEXTS[2:], dimensions=64), atol=1e-6)
        assert sum(o["response"]["body"]["usage"]["total_tokens"] for o in out.values()) == \
            status["stats"]["total_tokens"]
        errors = _lines(c.get(f"/v1/batch/{created['batch_id']}/errors").text)
        assert [e["custom_id"] for e in errors] == ["bad"]
        assert errors[0]["response"]["status_code"] == 422
        assert errors[0]["response"]["body"]["code"] == "INPUT_VALIDATION_FAILED"
        listed = c.get("/v1/batches").json()
        assert isinstance(listed, list) and created["batch_id"] in [j["batch_id"] for j in listed]


def test_input_url_text_and_jsonl_with_webhook_retried(batch_server, local_http):
    local_http.files["/corpus.txt"] = ("\n".join(TEXTS) + "\n\n").encode()
    local_http.files["/corpus.jsonl"] = b'{"custom_id": "a", "body": {"input": "hello"}}\n"plain json string"\n'
    local_http.fail_first["/hook"] = 1  # first delivery answers 500: the server retries
    with batch_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"{local_http.url}/corpus.txt",
                                                 "webhook_url": f"{local_http.url}/hook"})
        assert r.status_code == 200, r.text
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "completed" and job["stats"]["completed"] == len(TEXTS)
        out = _lines(c.get(f"/v1/batch/{job['batch_id']}/output").text)
        assert [o["custom_id"] for o in out] == [str(i) for i in range(len(TEXTS))]
        got = np.array([o["response"]["body"]["data"][0]["embedding"] for o in out])
        np.testing.assert_allclose(got, direct_vectors(c, "tiny", TEXTS), atol=1e-6)
        deadline = time.time() + 20
        while len(local_http.calls.get("/hook", [])) < 2 and time.time() < deadline:
            time.sleep(0.05)
        calls = local_http.calls["/hook"]
        assert len(calls) == 2 and calls[-1]["batch_id"] == job["batch_id"] and calls[-1]["status"] == "completed"

        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"{local_http.url}/corpus.jsonl"})
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert [o["custom_id"] for o in _lines(c.get(f"/v1/batch/{job['batch_id']}/output").text)] == ["a", "1"]

        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"{local_http.url}/missing.txt"})
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "failed" and "HTTP 404" in job["error"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"model": "tiny"}, 422, "exactly one of input"),
    ({"model": "tiny", "input": ["a"], "input_url": "http://127.0.0.1/x"}, 422, "exactly one of input"),
    ({"model": "tiny", "input": []}, 422, "at least 1"),
    ({"model": "tiny", "input": ["a"] * 10001}, 422, "10000"),
    ({"model": "nope", "input": ["a"]}, 400, "not served"),
    ({"model": "tiny", "input_url": "s3://bucket/key.jsonl"}, 400, "pre-signed https"),
    ({"model": "tiny", "input": ["a"], "webhook_url": "ftp://127.0.0.1/x"}, 400, "http or https"),
    ({"model": "tiny", "input": ["a"], "dimensions": 0}, 422, "dimensions"),
])
def test_create_errors_have_the_hosted_shape(batch_server, body, status, needle):
    with batch_server.client() as c:
        r = c.post("/v1/batch/embeddings", json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert needle in err["detail"] and err["error"]["message"] == err["detail"] and err["request_id"]


def test_unknown_job_is_404_and_cancel_stops_a_job(batch_server):
    with batch_server.client() as c:
        for path in ("/v1/batch/batch_nope", "/v1/batch/batch_nope/output"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["code"] == "RESOURCE_NOT_FOUND"
        r = c.post("/v1/batch/embeddings", json={"model": "minilm", "input": [f"text number {i}" for i in range(3000)]})
        batch_id = r.json()["batch_id"]
        cancelled = c.delete(f"/v1/batch/{batch_id}").json()
        assert cancelled["batch_id"] == batch_id
        job = wait_job(c, f"/v1/batch/{batch_id}")
        assert job["status"] == "cancelled" and job["stats"]["completed"] < 3000
        assert c.delete("/v1/batch/batch_nope").status_code == 404


def test_private_urls_are_refused_unless_allowed():
    from jinaserve.netguard import URLRefusedError, check_url

    with pytest.raises(URLRefusedError, match=r"loopback.*batch_allow_private_urls"):
        check_url("http://127.0.0.1:9/x.jsonl", what="input_url", allow_private=False)
    assert check_url("http://127.0.0.1:9/x.jsonl", what="input_url", allow_private=True)[3] == "127.0.0.1"


def test_expiry_then_cleanup(tmp_path, tiny_bert_path):
    """A job still running when its window ends becomes `expired` with its partial output; OpenAI lines that
    never ran get `batch_expired` error lines; after the retention time both jobs are deleted (404)."""
    with server_in_thread(models=[f"minilm={minilm_dir()}"], data_dir=str(tmp_path), batch_completion_window_s=3.0,
                          batch_retention_s=1.5) as srv, srv.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "minilm", "input": [f"sentence {i} " * 20
                                                                             for i in range(5000)]})
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}", timeout=30)
        assert job["status"] == "expired" and 0 < job["stats"]["completed"] < 5000
        lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
                             "body": {"model": "minilm", "input": "x"}}) for i in range(3)]
        up = c.post("/v1/files", files={"file": ("in.jsonl", "\n".join(lines).encode())}, data={"purpose": "batch"})
        r = c.post("/v1/batches", json={"input_file_id": up.json()["id"], "endpoint": "/v1/embeddings",
                                        "completion_window": "24h"})
        batch = r.json()
        while batch["status"] not in ("expired", "completed"):  # 3 lines usually finish inside the window
            time.sleep(0.05)
            batch = c.get(f"/v1/batches/{batch['id']}").json()
        counts = batch["request_counts"]
        assert counts["completed"] + counts["failed"] == 3
        if batch["status"] == "expired":
            errs = _lines(c.get(f"/v1/files/{batch['error_file_id']}/content").text)
            assert all(e["error"]["code"] == "batch_expired" for e in errs)
        gone = (f"/v1/batch/{job['batch_id']}", f"/v1/batches/{batch['id']}", f"/v1/files/{up.json()['id']}")
        deadline = time.time() + 15
        while any(c.get(p).status_code != 404 for p in gone[:2]) and time.time() < deadline:
            time.sleep(0.1)
        assert [c.get(p).status_code for p in gone] == [404, 404, 200]  # the uploaded input is the user's
