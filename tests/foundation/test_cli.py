"""The command line: `models`, `embed`, `rerank`, `pull` (offline), and the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from jinaserve.cli import app

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    return result, " ".join(result.output.split())


def test_models_json():
    result, _ = run("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in orjson.loads(result.stdout)}
    mini = rows["all-MiniLM-L6-v2"]
    assert mini["kind"] == "embedding" and mini["dimensions"] == 384 and mini["licence"] == "Apache-2.0"
    assert mini["bundled"] is True and mini["params"]
    for key in ("id", "kind", "tasks", "default_task", "dimensions", "max_tokens", "params", "licence", "hf_repo",
                "cached", "bundled"):
        assert all(key in r for r in rows.values()), key
    assert all(isinstance(r["tasks"], list) for r in rows.values())


def test_models_table():
    result, text = run("models")
    assert result.exit_code == 0
    assert "all-MiniLM-L6-v2" in text and "bundled" in text


def test_embed_prints_json_vectors(main_server):
    result, _ = run("embed", "--model", "all-MiniLM-L6-v2", "--offline", "hello world", "goodbye")
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.stdout)
    assert body["model"] == "all-MiniLM-L6-v2" and [d["index"] for d in body["data"]] == [0, 1]
    vecs = np.array([d["embedding"] for d in body["data"]])
    assert vecs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the same engine as the server: same vectors
    served = httpx.post(main_server.url + "/v1/embeddings",
                        json={"model": "all-MiniLM-L6-v2", "input": ["hello world", "goodbye"]}).json()
    np.testing.assert_allclose(vecs, [d["embedding"] for d in served["data"]], atol=1e-5)
    result, _ = run("embed", "--model", "all-MiniLM-L6-v2", "--offline", "--dimensions", "16", "x")
    assert len(orjson.loads(result.stdout)["data"][0]["embedding"]) == 16


def test_rerank_prints_json_results():
    docs = ["Berlin is the capital of Germany.", "Cats sleep a lot.", "Germany's capital is Berlin."]
    result, _ = run("rerank", "--model", "all-MiniLM-L6-v2", "--offline", "--top-n", "2",
                    "What is the capital of Germany?", *docs)
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.stdout)
    assert body["model"] == "all-MiniLM-L6-v2"
    assert {r["index"] for r in body["results"]} == {0, 2}
    assert all(r["document"] == {"text": docs[r["index"]]} for r in body["results"])


def test_no_model_named_and_no_hub_uses_the_bundled_model():
    """Like `jinaserve serve`: the defaults are neither cached nor downloadable here (HF_HUB_OFFLINE=1 in
    conftest), so with no -m the bundled model answers, with one warning (on stderr) saying so."""
    result, _ = run("embed", "--offline", "hello")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["model"] == "all-MiniLM-L6-v2"
    warning = " ".join(result.stderr.split())
    assert "jina-embeddings-v3 not cached: serving the bundled all-MiniLM-L6-v2 instead (pass -m to choose)" \
        in warning, warning
    result, _ = run("rerank", "--offline", "--top-n", "1", "capital of Germany?", "Cats sleep.", "Berlin, Germany")
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.stdout)
    assert body["model"] == "all-MiniLM-L6-v2" and body["results"][0]["index"] == 1


def test_unavailable_model_is_a_clean_error():
    # a named model is never replaced: not cached and not downloadable here → one error line, exit 1
    result, text = run("embed", "-m", "jina-embeddings-v3", "--offline", "hello")
    assert result.exit_code == 1
    assert "error:" in text and "jina-embeddings-v3" in text and "offline" in text
    assert "Traceback" not in result.output
    result, text = run("rerank", "--model", "no-such-model", "q", "d")
    assert result.exit_code == 1 and "Unknown model 'no-such-model'" in text


def test_pull_fails_cleanly_offline(tmp_path):
    result, text = run("pull", "jina-embeddings-v3", "--cache-dir", str(tmp_path))
    assert result.exit_code == 1
    assert text.startswith("pull failed:") and "offline" in text and "Traceback" not in result.output


@pytest.mark.parametrize("env_offline", ["0"])
def test_pull_fails_cleanly_without_network(tmp_path, env_offline):
    """Not offline, but the hub is unreachable (a closed local port): a clean message, exit 1."""
    env = {**os.environ, "HF_HUB_OFFLINE": env_offline, "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    exe = Path(sys.executable).parent / "jinaserve"
    proc = subprocess.run([str(exe), "pull", "org/some-model"], env=env, capture_output=True, text=True,
                          timeout=120)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, out
    assert "pull failed: could not download org/some-model" in out and "Traceback" not in out


def test_entry_point_help():
    exe = Path(sys.executable).parent / "jinaserve"
    proc = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    for flag in ("--models", "--host", "--port", "--device", "--dtype", "--api-key", "--config", "--offline"):
        assert flag in proc.stdout, flag
