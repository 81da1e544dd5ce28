"""Batch jobs where they meet the other features: odd JSON in lines (lone surrogates, integers beyond 64 bits,
bare numbers in a plain-text file) and a model that is not an embedding model. A line fails alone, with the
error the online endpoint gives for the same body; nothing is silently taken for something else; no 5xx."""

from __future__ import annotations

import json

import numpy as np
import pytest
from batch_helpers import direct_vectors, wait_job

SURROGATE_LINE = '{"custom_id": "lone", "body": {"input": "a\\ud800b"}}'  # the JSON escape of a lone surrogate


def _lines(client, job: dict, which: str) -> dict[str, dict]:
    r = client.get(f"/v1/batch/{job['batch_id']}/{which}")
    assert r.status_code == 200, r.text
    return {x["custom_id"]: x for x in map(json.loads, r.text.splitlines())}


def _online_status(client, raw_body: str) -> int:
    r = client.post("/v1/embeddings", content=raw_body.encode(), headers={"content-type": "application/json"})
    return r.status_code


def test_input_url_lines_odd_json_and_bare_numbers(batch_server, local_http):
    """A plain-text file's lines are inputs, numbers included; a JSON line with a lone-surrogate escape is a JSON
    line (and fails as the online request does), not a text to embed."""
    local_http.files["/odd.txt"] = ("2024\ntrue\nplain words\n" + SURROGATE_LINE + "\n").encode()
    with batch_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": local_http.url + "/odd.txt"})
        assert r.status_code == 200, r.text
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "completed", job
        out, err = _lines(c, job, "output"), _lines(c, job, "errors")
        assert set(out) == {"0", "1", "2"} and set(err) == {"lone"}, (out.keys(), err.keys())
        got = np.array([out[k]["response"]["body"]["data"][0]["embedding"] for k in ("0", "1", "2")])
        np.testing.assert_allclose(got, direct_vectors(c, "tiny", ["2024", "true", "plain words"]), atol=1e-6)
        online = _online_status(c, json.dumps({"model": "tiny", "input": "a\ud800b"}))
        assert err["lone"]["response"]["status_code"] == online == 400, err["lone"]
        assert "surrogate" in err["lone"]["response"]["body"]["detail"]


@pytest.mark.parametrize("raw_input", ['["a\\ud800b"]', "[-1208925819614629174706176]",
                                       '[{"custom_id": "\\ud800", "body": {"input": "fine"}}]'])
def test_inline_lines_with_values_orjson_refuses(batch_server, raw_input):
    """Inline lines the client sent with a lone surrogate or a huge integer: the job is created and the line
    gets the online endpoint's answer (a lone-surrogate custom_id is echoed as its escape)."""
    raw = '{"model": "tiny", "input": ' + raw_input + "}"
    with batch_server.client() as c:
        r = c.post("/v1/batch/embeddings", content=raw.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "completed" and job["stats"]["total"] == 1, job
        if "custom_id" in raw_input:
            assert job["stats"]["completed"] == 1, job
            assert list(_lines(c, job, "output")) == ["\\ud800"]
            return
        (line,) = _lines(c, job, "errors").values()
        item = json.loads(raw_input)[0]
        assert line["response"]["status_code"] == _online_status(c, json.dumps({"model": "tiny", "input": item}))


def test_openai_file_with_a_lone_surrogate_escape_runs_line_by_line(batch_server):
    lines = [json.dumps({"custom_id": "ok", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "tiny", "input": "fine"}}),
             json.dumps({"custom_id": "bad\ud800", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "tiny", "input": "x\ud800"}})]
    with batch_server.client() as c:
        f = c.post("/v1/files", files={"file": ("in.jsonl", "\n".join(lines).encode())}, data={"purpose": "batch"})
        assert f.status_code == 200, f.text
        r = c.post("/v1/batches", json={"input_file_id": f.json()["id"], "endpoint": "/v1/embeddings",
                                        "completion_window": "24h"})
        assert r.status_code == 200, r.text
        batch = wait_job(c, f"/v1/batches/{r.json()['id']}")
        assert batch["status"] == "completed" and batch["request_counts"] == {"total": 2, "completed": 1,
                                                                              "failed": 1}, batch
        errors = c.get(f"/v1/files/{batch['error_file_id']}/content").text.splitlines()
        (line,) = map(json.loads, errors)
        assert line["custom_id"] == "bad\\ud800" and line["response"]["status_code"] == 400, line


def test_a_reranker_cannot_run_a_batch_embedding_job(batch_server):
    with batch_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny-ce", "input": ["a", "b"]})
        assert r.status_code == 400, r.text
        assert "reranker" in r.json()["detail"] and "/v1/batches" in r.json()["detail"]


def test_image_url_lines_on_an_image_model_equal_online(tiny_clip_v2_path, local_http, tmp_path):
    """A batch of image lines (URLs, data URIs) on jina-clip: downloaded under the image guard in the job's thread
    (not the server's async prefetch), and each vector equals the online /v1/embeddings answer."""
    import base64
    import io

    from PIL import Image

    from helpers import server_in_thread

    def png(color: tuple[int, int, int]) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), color).save(buf, format="PNG")
        return buf.getvalue()

    local_http.files["/red.png"] = png((200, 30, 30))
    data_uri = "data:image/png;base64," + base64.b64encode(png((20, 40, 220))).decode()
    inputs = [{"image": local_http.url + "/red.png"}, {"image": data_uri}, {"text": "a red square"},
              {"image": local_http.url + "/missing.png"}]
    with server_in_thread(models=[f"clip={tiny_clip_v2_path}"], data_dir=str(tmp_path / "data"),
                          batch_allow_private_urls=True, image_allow_private_urls=True) as srv, srv.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "clip", "input": inputs})
        assert r.status_code == 200, r.text
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "completed" and job["stats"]["completed"] == 3, job
        out, err = _lines(c, job, "output"), _lines(c, job, "errors")
        for i in range(3):
            online = c.post("/v1/embeddings", json={"model": "clip", "input": [inputs[i]]})
            assert online.status_code == 200, online.text
            np.testing.assert_allclose(out[str(i)]["response"]["body"]["data"][0]["embedding"],
                                       online.json()["data"][0]["embedding"], atol=1e-6)
        online = c.post("/v1/embeddings", json={"model": "clip", "input": [inputs[3]]})
        assert err["3"]["response"]["status_code"] == online.status_code == 400, (err, online.text)
