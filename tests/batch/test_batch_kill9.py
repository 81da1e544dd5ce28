"""Exactly-once across `kill -9`: a server killed mid-job resumes on restart (same --data-dir), and a killed
`jinaserve batch run` resumes when re-run; every input appears in the output exactly once, with vectors equal
to direct /v1/embeddings calls (server) or to the in-process Embedder (CLI), atol 1e-5."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import direct_vectors, wait_job

from helpers import free_port, minilm_dir, wait_ready

N = 1000


def _texts(n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    return [f"row {i}: " + " ".join(words[(i * 7 + k) % len(words)] for k in range(3 + i % 9)) for i in range(n)]


def _serve(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jinaserve", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--models", f"minilm={minilm_dir()}", "--offline", "--data-dir",
                                 str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=120, proc=proc)
    return proc, url


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_server_killed_mid_job_resumes_exactly_once(tmp_path: Path) -> None:
    import httpx

    texts = _texts(N)
    proc, url = _serve(tmp_path / "data", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/batch/embeddings", json={"model": "minilm", "input": [
                {"custom_id": f"id-{i}", "body": {"input": t}} for i, t in enumerate(texts)]})
            batch_id = r.json()["batch_id"]
            deadline = time.time() + 120
            while time.time() < deadline:
                done = c.get(f"/v1/batch/{batch_id}").json()["stats"]["completed"]
                if done > 0:
                    break
                time.sleep(0.02)
        assert 0 < done < N, f"could not catch the job mid-way ({done} of {N} done)"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        _stop(proc)
    proc, url = _serve(tmp_path / "data", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            status = wait_job(c, f"/v1/batch/{batch_id}", timeout=180)
            assert status["status"] == "completed" and status["stats"]["completed"] == N
            lines = [json.loads(x) for x in c.get(f"/v1/batch/{batch_id}/output").text.splitlines()]
            ref = direct_vectors(c, "minilm", texts)
    finally:
        _stop(proc)
    ids = [x["custom_id"] for x in lines]
    assert len(ids) == N and sorted(ids) == sorted(f"id-{i}" for i in range(N))  # each exactly once
    got = np.array([x["response"]["body"]["data"][0]["embedding"] for x in lines], dtype=np.float32)
    order = [int(i.removeprefix("id-")) for i in ids]
    np.testing.assert_allclose(got, ref[order], atol=1e-5)


def test_cli_killed_mid_run_resumes_exactly_once(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    texts = _texts(N)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.parquet"
    data = tmp_path / "data"
    cmd = [str(Path(sys.executable).parent / "jinaserve"), "batch", "run", str(src), "--out", str(out),
           "-m", f"minilm={minilm_dir()}", "--offline", "--data-dir", str(data)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (data / "jinaserve.db").exists():
                with sqlite3.connect(data / "jinaserve.db", timeout=5) as db:
                    try:
                        row = db.execute("SELECT next_line FROM batch_jobs WHERE api = 'cli'").fetchone()
                    except sqlite3.OperationalError:
                        row = None
                done = row[0] if row else 0
                if done > 0:
                    break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert 0 < done < N and not out.exists(), f"could not catch the run mid-way ({done} of {N})"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed at row" in rerun.stderr, rerun.stderr[-2000:]
    table = pq.read_table(out)
    assert table.column("index").to_pylist() == list(range(N))
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in range(N)]
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    from jinaserve import Embedder

    with Embedder(str(minilm_dir()), offline=True) as emb:
        ref = emb.encode(texts)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stderr
