"""Load: 64 concurrent clients for 30 s against the tiny model in a real server process.

Checks: no 5xx and no transport errors; the only non-200 answers are explicit 429s (JSON `detail`,
`Retry-After`) from a full batch queue; the server's RSS stays under a stated bound; `/metrics`
counters move by exactly what the clients saw; request ids come back. p50/p99 are reported."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time

import httpx
import numpy as np
import psutil
from ops_figures import record

from helpers import server_process

CLIENTS = 64
SECONDS = float(os.environ.get("JINASERVE_LOAD_SECONDS", "30"))
RSS_BOUND_MB = 1024  # tiny model server: ~0.5 GB after importing torch; must not grow past 1 GiB
QUEUE_ITEMS = 64  # small on purpose: 64 clients x 2 inputs (128 items) can overfill it, so 429s are exercised


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            total += float(m.group(2))
    return total


async def _client(i: int, url: str, deadline: float, out: dict) -> None:
    texts = [f"client {i} asks about item {j} and other things" for j in range(50)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        n = 0
        while time.perf_counter() < deadline:
            rid = f"load-{i}-{n}"
            body = {"model": "tiny", "input": [texts[n % 50], texts[(n + 7) % 50]]}
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/embeddings", json=body, headers={"X-Request-ID": rid})
            except httpx.HTTPError as exc:
                out["errors"].append(repr(exc))
                n += 1
                continue
            dt = time.perf_counter() - t0
            out["status"][r.status_code] = out["status"].get(r.status_code, 0) + 1
            if r.headers.get("x-request-id") != rid:
                out["bad_request_id"] += 1
            if r.status_code == 200:
                data = r.json()["data"]
                if len(data) != 2 or len(data[0]["embedding"]) != 32:
                    out["bad_body"] += 1
                out["latency"].append(dt)
            elif r.status_code == 429:
                body = r.json()
                if not isinstance(body.get("detail"), str) or "retry-after" not in r.headers:
                    out["bad_body"] += 1
                await asyncio.sleep(0.05)
            else:
                out["other"].append((r.status_code, r.text[:200]))
            n += 1


def test_64_clients_30s(tiny_bert_path):
    env = {"JINASERVE_MAX_QUEUE_ITEMS": str(QUEUE_ITEMS), "JINASERVE_LOG_LEVEL": "warning"}
    with server_process("--models", f"tiny={tiny_bert_path}", "--threads", "1", env=env) as srv:
        proc = psutil.Process(srv.process.pid)
        before = httpx.get(srv.url + "/metrics").text
        peak = {"rss": proc.memory_info().rss}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak["rss"] = max(peak["rss"], proc.memory_info().rss)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out: dict = {"status": {}, "latency": [], "errors": [], "other": [], "bad_body": 0, "bad_request_id": 0}

        async def run() -> None:
            deadline = time.perf_counter() + SECONDS
            await asyncio.gather(*(_client(i, srv.url, deadline, out) for i in range(CLIENTS)))

        t0 = time.perf_counter()
        asyncio.run(run())
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        after = httpx.get(srv.url + "/metrics").text

    ok, rejected = out["status"].get(200, 0), out["status"].get(429, 0)
    five_xx = sum(v for k, v in out["status"].items() if k >= 500)
    lat = np.array(out["latency"]) * 1000
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (0.0, 0.0)
    peak_mb = peak["rss"] / 2**20
    record("load_64_clients", seconds=round(elapsed, 1), requests=ok + rejected + five_xx + len(out["other"]),
           served_200=ok, rejected_429=rejected, errors_5xx=five_xx, transport_errors=len(out["errors"]),
           lost=five_xx + len(out["errors"]), p50_ms=round(p50, 1), p99_ms=round(p99, 1),
           throughput_rps=round(ok / elapsed, 1), peak_rss_mb=round(peak_mb), rss_bound_mb=RSS_BOUND_MB)

    assert not out["errors"], out["errors"][:5]
    assert five_xx == 0 and not out["other"], out["other"][:5]
    assert out["bad_body"] == 0 and out["bad_request_id"] == 0
    assert ok > CLIENTS, "the server answered almost nothing"
    assert peak_mb < RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
    # /metrics moved by exactly what the clients saw
    labels = {"endpoint": "/v1/embeddings", "model": "tiny"}
    assert _metric(after, "jinaserve_requests_total", **labels, status="200") - \
        _metric(before, "jinaserve_requests_total", **labels, status="200") == ok
    assert _metric(after, "jinaserve_requests_total", **labels, status="429") - \
        _metric(before, "jinaserve_requests_total", **labels, status="429") == rejected
    assert _metric(after, "jinaserve_rejected_total", model="tiny") - \
        _metric(before, "jinaserve_rejected_total", model="tiny") == rejected
    assert _metric(after, "jinaserve_inputs_total", model="tiny") - \
        _metric(before, "jinaserve_inputs_total", model="tiny") == 2 * ok
    assert _metric(after, "jinaserve_request_duration_seconds_count", **labels) - \
        _metric(before, "jinaserve_request_duration_seconds_count", **labels) == ok
