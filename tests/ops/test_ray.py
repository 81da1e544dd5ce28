"""Scale-out on Ray Serve: `jinaserve serve --ray --replicas 2` starts a local single-node Ray head and two
replicas of the tiny model behind Ray's HTTP proxy (on 127.0.0.1). Both replicas receive traffic; when one
replica process is killed (SIGKILL) mid-traffic, requests keep succeeding (a client retrying idempotent
embedding calls, Ray routing around the dead replica and replacing it) and no request is lost. SIGTERM to
the command shuts Serve and Ray down with exit status 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from ops_figures import record

from helpers import free_port

ray = pytest.importorskip("ray", reason="Ray is in the `ray` and `dev` extras")


def _ready(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Ready = the command logged that its app is deployed (Serve's `serve.run` returned: every replica is
    up and healthy) and `/readyz` answers 200 through the proxy."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"`jinaserve serve --ray` exited with {proc.returncode}"
        if "Ray Serve app 'jinaserve' on http://" in log.read_text(errors="replace"):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.25)
    pytest.fail(f"Ray Serve app not ready within {timeout} s")


@pytest.fixture(scope="module")
def ray_app(tiny_bert_path, tmp_path_factory):
    """The real command, `jinaserve serve --ray --replicas 2`, as a process: it starts a local single-node
    Ray head, deploys with Ray's HTTP proxy on 127.0.0.1, and on SIGTERM shuts Serve and Ray down."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINASERVE_")}
    env.update({"JINASERVE_LOG_LEVEL": "info", "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    cmd = [str(Path(sys.executable).parent / "jinaserve"), "serve", "--ray", "--replicas", "2",
           "--replica-cpus", "0.5", "--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--offline",
           "--models", f"tiny={tiny_bert_path}"]
    t0 = time.perf_counter()
    log = tmp_path_factory.mktemp("ray") / "serve.log"
    with log.open("w") as out:  # a file, not a pipe: nothing blocks on unread output
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        _ready(url, proc, log, timeout=180)
        yield url, time.perf_counter() - t0, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test started, nothing else
                proc.wait(timeout=10)


def _post(client: httpx.Client, url: str, i: int) -> httpx.Response:
    return client.post(url + "/v1/embeddings", json={"model": "tiny", "input": [f"request {i}", "more text"]},
                       headers={"X-Request-ID": f"ray-{i}"})


def test_two_replicas_share_traffic_and_survive_a_kill(ray_app):
    url, startup_s, proc = ray_app
    with httpx.Client(timeout=30) as client:
        seen: dict[str, int] = {}
        for i in range(60):
            r = _post(client, url, i)
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == f"ray-{i}"
            assert len(r.json()["data"]) == 2
            seen[r.headers["x-jinaserve-replica"]] = seen.get(r.headers["x-jinaserve-replica"], 0) + 1
            if len(seen) == 2 and i >= 20:
                break
        assert len(seen) == 2, f"traffic reached only {seen}"
        # without a client id, the id in the header (Ray's) is the one jinaserve used (error body)
        r = client.post(url + "/v1/embeddings", json={"model": "tiny"})
        assert r.status_code == 422 and r.json()["request_id"] == r.headers["x-request-id"]
        assert httpx.get(url + "/readyz").status_code == 200

    # Kill one replica's process while clients keep sending; clients retry failed calls (bounded).
    victim = int(next(iter(seen)))
    stats = {"sent": 0, "ok_first_try": 0, "ok_after_retry": 0, "lost": 0, "failed_attempts": 0}
    pids_after: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not stop.is_set():
                i = 10_000 * (w + 1) + n
                n += 1
                with lock:
                    stats["sent"] += 1
                for attempt in range(8):
                    try:
                        r = _post(client, url, i)
                        if r.status_code == 200 and len(r.json()["data"]) == 2:
                            with lock:
                                stats["ok_first_try" if attempt == 0 else "ok_after_retry"] += 1
                                pids_after.add(r.headers["x-jinaserve-replica"])
                            break
                    except httpx.HTTPError:
                        pass
                    with lock:
                        stats["failed_attempts"] += 1
                    time.sleep(0.25 * (attempt + 1))
                else:
                    with lock:
                        stats["lost"] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.perf_counter()
    # keep the traffic going until Ray has started a replacement replica that answers (bounded)
    deadline = killed_at + 60
    while time.perf_counter() < deadline:
        with lock:
            replacement = pids_after - set(seen)
        if replacement and time.perf_counter() - killed_at > 3:
            break
        time.sleep(0.2)
    recovered_s = time.perf_counter() - killed_at
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)

    # SIGTERM to the command: Serve and the local Ray head shut down, exit status 0, port released
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    output = proc.log_path.read_text()
    assert rc == 0, output[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/readyz", timeout=2)

    record("ray_2_replicas", startup_s=round(startup_s, 1), pre_kill_spread=dict(seen), **stats,
           replacement_replica_seen=bool(pids_after - set(seen)), recovery_s=round(recovered_s, 1))
    assert stats["lost"] == 0, stats
    assert stats["ok_first_try"] + stats["ok_after_retry"] == stats["sent"]
    assert pids_after - set(seen), "Ray did not replace the killed replica within 60 s"


def test_ray_options_map_to_serve_deployment_settings():
    from jinaserve.ray_serve import RayOptions

    fixed = RayOptions(replicas=3, num_cpus=2, num_gpus=1).deployment_options()
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1}
    auto = RayOptions(min_replicas=1, max_replicas=6, target_ongoing_requests=4).deployment_options()
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 6, "initial_replicas": 1,
                                          "target_ongoing_requests": 4}
    with pytest.raises(ValueError):
        RayOptions(min_replicas=5, max_replicas=2).deployment_options()
    with pytest.raises(ValueError):
        RayOptions(replicas=0).deployment_options()
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**auto["autoscaling_config"])  # Ray accepts it


def test_python_m_jinaserve_ray_is_the_serve_ray_command():
    """`python -m jinaserve.ray OPTIONS` runs `jinaserve serve --ray OPTIONS` (checked through --help, which
    parses the same command line without starting Ray)."""
    r = subprocess.run([sys.executable, "-m", "jinaserve.ray", "--help"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "serve [OPTIONS]" in r.stdout and "Ray Serve application" in r.stdout
    for flag in ("--replicas", "--min-replicas", "--max-replicas", "--target-ongoing-requests", "--ray-address",
                 "--replica-cpus", "--replica-gpus"):
        assert flag in r.stdout, flag
    r = subprocess.run([sys.executable, "-m", "jinaserve.ray", "--replicas", "two"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "replicas" in r.stderr  # typer's usage error: options are serve's
