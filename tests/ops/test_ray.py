"""Scale-out on Ray Serve: a local Ray head on 127.0.0.1, two replicas of the tiny model behind Ray's
HTTP proxy. Both replicas receive traffic; when one replica process is killed (SIGKILL) mid-traffic,
requests keep succeeding (a client retrying idempotent embedding calls, Ray routing around the dead
replica and replacing it) and no request is lost."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from ops_figures import record

from helpers import free_port

ray = pytest.importorskip("ray", reason="Ray is in the `ray` and `dev` extras")


@pytest.fixture(scope="module")
def ray_app(tiny_bert_path):
    from jinaserve.config import Settings
    from jinaserve.ray_serve import RayOptions, shutdown, start

    port = free_port()
    settings = Settings(host="127.0.0.1", port=port, models=[f"tiny={tiny_bert_path}"], offline=True, threads=1,
                        log_level="warning")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        start(settings, RayOptions(replicas=2, num_cpus=0.5, health_check_period_s=1.0))
        yield f"http://127.0.0.1:{port}", time.perf_counter() - t0
    finally:
        shutdown()


def _post(client: httpx.Client, url: str, i: int) -> httpx.Response:
    return client.post(url + "/v1/embeddings", json={"model": "tiny", "input": [f"request {i}", "more text"]},
                       headers={"X-Request-ID": f"ray-{i}"})


def test_two_replicas_share_traffic_and_survive_a_kill(ray_app):
    url, startup_s = ray_app
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
