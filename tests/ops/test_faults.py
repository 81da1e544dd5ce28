"""Faults: a forward pass that raises for some inputs, a model that fails to load, SIGTERM under load,
clients that disconnect mid-request."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil
import pytest
from ops_figures import record

from helpers import server_in_thread, server_process


def _faulty_registry(tiny: Path, broken: Path):
    from jinaserve.config import Settings
    from jinaserve.engine.registry import ModelRegistry, load_options
    from jinaserve.engine.service import ModelService
    from jinaserve.models import family_class
    from jinaserve.models.resolve import detect_spec

    settings = Settings(offline=True, max_batch_size=16)
    registry = ModelRegistry(settings)
    # the real loader: one good model, one with corrupt weights
    registry.load([f"tiny={tiny}", f"broken={broken}"])
    # the fault-injecting family, found through jinaserve.models.FAMILIES like any other family
    spec = replace(detect_spec(tiny, "faulty"), family="ops_faulty")
    family = family_class("ops_faulty").load(spec, tiny, load_options(settings))
    registry.add(ModelService("faulty", family, max_batch_size=16), "faulty")
    return settings, registry


def test_forward_fault_fails_only_its_requests_and_failed_load_is_named(tiny_bert_path, faulty_family, tmp_path):
    marker = faulty_family
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_path, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: the loader must fail

    settings, registry = _faulty_registry(tiny_bert_path, broken)
    with server_in_thread(settings, registry=registry) as srv:
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert "broken" in body["detail"]
        assert body["models"]["broken"]["state"] == "failed" and body["models"]["broken"]["error"]
        assert body["models"]["tiny"]["state"] == "ready" and body["models"]["faulty"]["state"] == "ready"
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "broken", "input": "x"})
        assert r.status_code == 503 and "failed to load" in r.json()["detail"]

        texts = [f"sentence number {i} about things" for i in range(24)]
        reference = httpx.post(srv.url + "/v1/embeddings", json={"model": "faulty", "input": texts}).json()
        ref = {t: d["embedding"] for t, d in zip(texts, reference["data"], strict=True)}

        def call(i: int) -> tuple[int, httpx.Response]:
            text = f"{texts[i % 24]} {marker}" if i % 4 == 0 else texts[i % 24]
            return i, httpx.post(srv.url + "/v1/embeddings", json={"model": "faulty", "input": [text]}, timeout=60)

        with cf.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(48)))
        bad = [r for i, r in results if i % 4 == 0]
        good = [(i, r) for i, r in results if i % 4 != 0]
        for r in bad:
            assert r.status_code == 500, r.text
            assert isinstance(r.json()["detail"], str) and r.json()["code"] == "INTERNAL_ERROR"
        for i, r in good:
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["data"][0]["embedding"], ref[texts[i % 24]], atol=1e-5)
        # other models are untouched and the server keeps serving
        assert httpx.post(srv.url + "/v1/embeddings", json={"model": "tiny", "input": "ok"}).status_code == 200
    registry.close()


def _long_texts(n: int, words: int = 120, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = ["the", "of", "and", "model", "server", "request", "batch", "token", "vector", "query",
             "document", "result", "apple", "river"]
    return [" ".join(rng.choice(vocab, size=words)) for _ in range(n)]


def _sample(metrics_text: str, prefix: str) -> float:
    lines = [line for line in metrics_text.splitlines() if line.startswith(prefix + " ")]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_sigterm_drains_in_flight_requests_and_exits_0(tiny_bert_path):
    n_requests, n_inputs = 8, 32
    # A generous drain window: on a loaded CI box the queued work must not hit uvicorn's graceful-shutdown
    # timeout (which cancels what is left); the drain time itself is recorded below.
    env = {"JINASERVE_GRACEFUL_TIMEOUT_S": "120", "JINASERVE_MAX_QUEUE_WAIT_S": "0"}  # all 8 must be admitted
    with server_process("--models", f"tiny={tiny_bert_path}", "--threads", "1", "--max-batch-size", "2",
                        env=env) as srv:
        proc = srv.process
        client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=n_requests))

        def call(i: int) -> httpx.Response:
            return client.post(srv.url + "/v1/embeddings",
                               json={"model": "tiny", "input": _long_texts(n_inputs, seed=i)})

        pool = cf.ThreadPoolExecutor(n_requests)
        futures = [pool.submit(call, i) for i in range(n_requests)]
        # Wait until the server has accepted every request, then ask it to stop. A request enqueues its
        # inputs at once, so queue depth + executed items >= everything sent - one running batch (2 items)
        # means all are in. A request still in the client's socket at SIGTERM was never accepted.
        deadline = time.time() + 60
        depth = executed = 0.0
        while time.time() < deadline:
            m = httpx.get(srv.url + "/metrics").text
            depth = _sample(m, 'jinaserve_queue_depth{model="tiny"}')
            executed = _sample(m, 'jinaserve_batch_size_sum{model="tiny"}')
            if depth + executed >= n_requests * n_inputs - 2:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"requests never all queued (depth {depth}, executed {executed})")
        assert depth >= n_inputs, f"too little work left in the queue to test draining ({depth} items)"
        t_sigterm = time.time()
        proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
        rc = proc.wait(timeout=150)
        drained_s = time.time() - t_sigterm
        pool.shutdown()
        client.close()
    ok = [r for r in responses if r.status_code == 200]
    for r in responses:
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert len(data) == n_inputs and all(len(d["embedding"]) == 32 for d in data)
    assert rc == 0
    record("sigterm_drain", accepted=n_requests, queued_items_at_sigterm=int(depth), completed=len(ok),
           lost=n_requests - len(ok), exit_code=rc, drain_seconds=round(drained_s, 2))


def test_graceful_timeout_answers_503_never_500(tiny_bert_path):
    """SIGTERM with more queued work than the graceful-shutdown time allows: requests that finish in time get
    their full 200, the rest a JSON 503 with Retry-After (never uvicorn's bare 500 for a cancelled task), and
    the server still stops. (`should_exit` is what uvicorn's SIGTERM handler sets.)"""
    import threading

    import uvicorn

    from helpers import free_port, wait_ready
    from jinaserve import metrics
    from jinaserve.api.app import create_app
    from jinaserve.config import Settings

    def executed() -> float:
        return metrics.REGISTRY.get_sample_value("jinaserve_batch_size_sum", {"model": "tiny"}) or 0.0

    n_requests, n_inputs = 8, 256
    port = free_port()
    # a queue far longer than the default 30 s admission limit on purpose (max_queue_wait_s=0: no limit)
    settings = Settings(host="127.0.0.1", port=port, offline=True, models=[f"tiny={tiny_bert_path}"], threads=1,
                        max_batch_size=1, max_queue_wait_s=0)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    service = app.state.registry.services["tiny"]
    base = executed()
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=n_requests))

    def call(i: int) -> httpx.Response:
        return client.post(url + "/v1/embeddings", json={"model": "tiny", "input": _long_texts(n_inputs, seed=i)},
                           headers={"X-Request-ID": f"late-{i}"})

    with cf.ThreadPoolExecutor(n_requests) as pool:
        futures = [pool.submit(call, i) for i in range(n_requests)]
        deadline = time.time() + 60
        while service.batcher.queue_depth + executed() - base < n_requests * n_inputs - 1:
            assert time.time() < deadline, "requests never all queued"
            time.sleep(0.01)
        t_stop = time.time()
        server.should_exit = True
        responses = [f.result() for f in futures]
    thread.join(timeout=60)
    stopped_s = time.time() - t_stop
    client.close()
    assert not thread.is_alive(), "the server did not stop"
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, [(r.status_code, r.text[:200]) for r in responses if r.status_code not in
                                         (200, 503)]
    assert 503 in statuses, "all work finished within 1 s: nothing tested the timeout path"
    for i, r in enumerate(responses):
        assert r.headers["x-request-id"] == f"late-{i}"
        if r.status_code == 200:
            assert len(r.json()["data"]) == n_inputs
        else:
            body = r.json()
            assert isinstance(body["detail"], str) and "shutting down" in body["detail"]
            assert body["code"] == "SERVICE_UNAVAILABLE" and body["request_id"] == f"late-{i}"
            assert r.headers["retry-after"] == "1"
    assert service.batcher.queue_depth == 0  # the unfinished requests' queued work was dropped
    record("graceful_timeout", requests=n_requests, full_200=statuses.count(200), retryable_503=statuses.count(503),
           errors_500=0, stopped_seconds=round(stopped_s, 2))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_client_disconnect_cancels_queued_work(minilm_path):
    """Clients that hang up mid-request: their queued items are dropped (not run), nothing stays queued,
    memory does not grow round after round, and the server keeps serving."""
    from jinaserve import metrics

    def executed() -> float:
        return metrics.REGISTRY.get_sample_value("jinaserve_batch_size_sum", {"model": "minilm"}) or 0.0

    per_request, n_clients, rounds = 32, 8, 4
    rss: list[float] = []
    executed_per_round: list[float] = []
    with server_in_thread(models=[f"minilm={minilm_path}"], max_batch_size=4, threads=1) as srv:
        service = srv.app.state.registry.services["minilm"]
        for rnd in range(rounds):
            before = executed()
            socks = []
            for i in range(n_clients):
                body = orjson.dumps({"model": "minilm", "input": _long_texts(per_request, seed=rnd * 100 + i)})
                s = socket.create_connection(("127.0.0.1", srv.port))
                s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                socks.append(s)
            deadline = time.time() + 20
            while service.batcher.queue_depth == 0 and time.time() < deadline:
                time.sleep(0.01)
            for s in socks:
                s.close()  # hang up before any answer
            deadline = time.time() + 30
            while (service.batcher.queue_depth or service.batcher.in_flight) and time.time() < deadline:
                time.sleep(0.02)
            assert service.batcher.queue_depth == 0 and service.batcher.in_flight == 0
            executed_per_round.append(executed() - before)
            rss.append(_rss_mb())
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "minilm", "input": "still serving"}, timeout=60)
        assert r.status_code == 200
        m = httpx.get(srv.url + "/metrics").text
        assert 'jinaserve_requests_total{endpoint="/v1/embeddings",model="minilm",status="499"}' in m
    submitted = per_request * n_clients
    # Work for gone clients is dropped: at most a few batches that were already running finish.
    assert max(executed_per_round) <= submitted * 0.5, executed_per_round
    assert rss[-1] - rss[1] < 64, rss  # MB; round 0 warms allocator caches
    record("client_disconnect", submitted_items_per_round=submitted,
           executed_items_per_round=[int(x) for x in executed_per_round],
           rss_mb_per_round=[round(x) for x in rss])
