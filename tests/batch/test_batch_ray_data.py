"""`jinaserve batch run --ray` against a local Ray head (its own ports and temp dir, so it cannot collide with
tests/ops/test_ray.py or other runs), with an actor pool of 2 Embedders: the output file equals the
in-process run's (same rows, same order, vectors within 1e-5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import free_ports

pytest.importorskip("ray.data", reason="Ray Data is in the `ray-data` and `dev` extras")

# Single-node mode: Ray then takes 127.0.0.1 as the node address (instead of the machine's own interface
# address), so the head, its workers and the driver only ever talk over loopback.
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def _ray_head(tmp: Path):
    names = ("--node-manager-port", "--object-manager-port", "--ray-client-server-port",
             "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port")
    port, *chosen = free_ports(1 + len(names) + 16)  # distinct: Ray refuses a port given to two components
    ports = dict(zip(names, chosen, strict=False))
    workers = ",".join(str(p) for p in chosen[len(names):])
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", str(port),
           "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false",
           "--temp-dir", str(tmp), "--worker-port-list", workers]
    for flag, value in ports.items():
        cmd += [flag, str(value)]
    log = (tmp / "head.log").open("w")
    proc = subprocess.Popen(cmd, env=RAY_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while "will now block" not in (tmp / "head.log").read_text(errors="replace"):  # the head is up
        assert proc.poll() is None and time.time() < deadline, (tmp / "head.log").read_text()[-3000:]
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


def test_ray_data_run_equals_in_process_run(tmp_path: Path, tiny_bert_path: Path) -> None:
    texts = [f"document number {i} about {'cats' if i % 2 else 'markets'} " * (1 + i % 5) for i in range(300)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    jinaserve = str(Path(sys.executable).parent / "jinaserve")
    common = ["-m", f"tiny={tiny_bert_path}", "--offline", "--data-dir", str(tmp_path / "data")]
    env = RAY_ENV
    from jinaserve.batch.local import make_spec, run_local
    from jinaserve.config import Settings
    from jinaserve.engine.registry import load_service
    from jinaserve.store.jobs import open_job_store

    service = load_service(f"tiny={tiny_bert_path}", Settings(offline=True))
    try:  # the in-process run, here in the test process
        run_local(open_job_store(tmp_path / "data"), make_spec(src, tmp_path / "local.jsonl", "tiny"), service)
    finally:
        service.close()
    ray_tmp = Path(tempfile.mkdtemp(prefix="jsr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    head, address = _ray_head(ray_tmp)
    try:
        t0 = time.perf_counter()
        run = subprocess.run([jinaserve, "batch", "run", str(src), "--out", str(tmp_path / "ray.jsonl"), *common,
                              "--ray", "--ray-address", address, "--replicas", "2", "--replica-cpus", "0.5"],
                             env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-3000:] + (ray_tmp / "head.log").read_text()[-2000:]
        took = time.perf_counter() - t0
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the session this test started, nothing else
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
    local_rows = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    ray_rows = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["index"] for r in ray_rows] == list(range(300)) == [r["index"] for r in local_rows]
    assert [r["id"] for r in ray_rows] == list(range(300))
    np.testing.assert_allclose([r["embedding"] for r in ray_rows], [r["embedding"] for r in local_rows], atol=1e-5)
    print(f"ray data run: {took:.1f} s")
