"""input_url on object storage: s3:// through s3fs against moto's S3 server on 127.0.0.1 (a real
implementation of the S3 API, reached through the standard AWS_ENDPOINT_URL override, as a MinIO user would),
vectors equal to /v1/embeddings; and the refusals: off by default, missing extra, no key, missing object, size."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from batch_helpers import direct_vectors, wait_job

from helpers import free_port, server_in_thread

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

TEXTS = ["Object storage holds the corpus.", "A second line of the corpus.", "Third line.", "Fourth, and last."]
BUCKET = "corpora"


@pytest.fixture(scope="module")
def s3_endpoint():
    import boto3
    import s3fs

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        lines = [json.dumps({"custom_id": f"doc-{i}", "body": {"input": t}}) for i, t in enumerate(TEXTS)]
        client.put_object(Bucket=BUCKET, Key="in/corpus.jsonl", Body="\n".join(lines).encode())
        client.put_object(Bucket=BUCKET, Key="in/big.txt", Body=b"word " * 4000)
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture(scope="module")
def object_server(s3_endpoint, tiny_bert_path, tmp_path_factory):
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], data_dir=str(tmp_path_factory.mktemp("s3-data")),
                          batch_allow_object_store=True, batch_max_input_bytes=10_000) as srv:
        yield srv


def _out(client, job_id: str) -> dict[str, dict]:
    lines = [json.loads(x) for x in client.get(f"/v1/batch/{job_id}/output").text.splitlines() if x.strip()]
    return {line["custom_id"]: line for line in lines}


def test_s3_input_url_job_equals_online_embeddings(object_server):
    with object_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"s3://{BUCKET}/in/corpus.jsonl"})
        assert r.status_code == 200, r.text
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "completed", job
        out = _out(c, job["batch_id"])
        assert sorted(out) == [f"doc-{i}" for i in range(len(TEXTS))]
        got = np.array([out[f"doc-{i}"]["response"]["body"]["data"][0]["embedding"] for i in range(len(TEXTS))])
        np.testing.assert_allclose(got, direct_vectors(c, "tiny", TEXTS), atol=1e-6)


def test_s3_missing_object_and_oversize_object_fail_the_job_with_the_cause(object_server):
    with object_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"s3://{BUCKET}/in/nothing.jsonl"})
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "failed" and "does not exist" in job["error"], job
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"s3://{BUCKET}/in/big.txt"})
        job = wait_job(c, f"/v1/batch/{r.json()['batch_id']}")
        assert job["status"] == "failed" and "batch_max_input_bytes" in job["error"], job


def test_object_urls_refused_at_creation_with_what_to_do(object_server, batch_server):
    with batch_server.client() as c:  # the default: object storage off
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"s3://{BUCKET}/in/corpus.jsonl"})
        assert r.status_code == 400, r.text
        assert "batch_allow_object_store" in r.json()["detail"] and "pre-signed" in r.json()["detail"]
    with object_server.client() as c:
        r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": f"s3://{BUCKET}"})
        assert r.status_code == 400 and "names no object" in r.json()["detail"], r.text
        if importlib.util.find_spec("gcsfs") is None:  # the [gcs] extra is not in [dev]
            r = c.post("/v1/batch/embeddings", json={"model": "tiny", "input_url": "gs://bucket/corpus.jsonl"})
            assert r.status_code == 400, r.text
            assert "jinaserve[gcs]" in r.json()["detail"]
