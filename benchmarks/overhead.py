"""Per-request Python overhead of jinaserve for a 1-input request, beyond the model's own forward time.

Run as `python -m benchmarks.overhead SPEC.json` (own process). It loads the real app with the real
model and, interleaved so machine noise hits both alike, times:

- `request`: one `POST /v1/embeddings` (1 input, base64) through the whole ASGI app: middleware, routing,
  pydantic validation, tokenisation (on the loop for a request this small: `INLINE_PLAN_MAX_CHARS` in
  `jinaserve.engine.service`), batcher queue + worker thread hand-off,
  normalisation, orjson response. (No socket: uvicorn's C HTTP parser and the client are excluded —
  the end-to-end HTTP 1×1 latency in the main table includes them.)
- `forward`: the family's `run_batch` call that served that very request (pad → model → pool → numpy),
  timed inside the batcher's worker thread — the model's own work for the request.
- `tokenize`: the family's `plan_embed` (tokenisation + planning) for the same input, for reference
  (it is part of the overhead).

overhead = p50 over requests of (request − its own forward).

Two controls follow, with the forward replaced by a replay of its stored result:
- `pause`: the replay preceded by an idle `time.sleep` as long as the real forward's p50 (no computation,
  no memory traffic), subtracted like the forward. On a shared VM an idle gap alone slows the code around
  it (the vCPU is descheduled and its caches are taken by other tenants), so this is the floor the real
  figure can reach on that machine.
- `noop`: the same requests back to back, nothing between them: the serving path's own cost.
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


async def _asgi_post(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    from jinaserve.api.app import create_app
    from jinaserve.config import Settings
    from jinaserve.engine.registry import ModelRegistry
    from jinaserve.jobs import EmbedInput, EmbedOptions
    from jinaserve.logs import setup_logging

    settings = Settings(models=[f"minilm={spec['model_dir']}"], threads=spec["threads"], device="cpu",
                        dtype="float32", offline=True)
    # Same logging as `jinaserve serve` (access log at info), written to a file rather than a terminal.
    setup_logging(settings.log_format, settings.log_level)
    handler = logging.FileHandler(spec["log_path"])
    logging.getLogger().handlers[:] = [handler]
    registry = ModelRegistry(settings)
    await asyncio.to_thread(registry.load, settings.models)
    app = create_app(settings, registry=registry)
    service = registry.get("minilm", "embedding")
    family = service.family
    texts: list[str] = spec["texts"]
    bodies = [orjson.dumps({"model": "minilm", "input": [t], "embedding_type": "base64"}) for t in texts]
    opts = EmbedOptions(embedding_type="base64")

    # Time each forward where it really runs: inside the batcher's worker thread.
    forward_times: list[float] = []
    run_batch = service.batcher._run_batch

    replay: dict[int, list[Any]] = {}
    noop = False
    pause_s = 0.0

    def timed_run_batch(payloads: list[Any]) -> list[Any]:
        t0 = time.perf_counter()
        if noop and len(payloads) in replay:
            if pause_s:
                time.sleep(pause_s)
            out = replay[len(payloads)]
        else:
            out = run_batch(payloads)
            replay[len(payloads)] = out
        forward_times.append(time.perf_counter() - t0)
        return out

    service.batcher._run_batch = timed_run_batch
    for i in range(20):  # warm-up
        status, _ = await _asgi_post(app, "/v1/embeddings", bodies[i % len(bodies)])
        assert status == 200, status

    async def timed_request(body: bytes) -> tuple[float, float]:
        """(request latency, the forward that served it), in seconds."""
        forward_times.clear()
        t0 = time.perf_counter()
        status, content = await _asgi_post(app, "/v1/embeddings", body)
        latency = time.perf_counter() - t0
        if status != 200 or len(forward_times) != 1:
            raise RuntimeError(f"request failed: {status} {content[:200]!r} ({len(forward_times)} batches)")
        return latency, forward_times[0]

    req: list[float] = []
    fwd: list[float] = []
    tok: list[float] = []
    deadline = time.perf_counter() + spec["duration_s"]
    i = 0
    while time.perf_counter() < deadline and i < spec.get("max_iterations", 5000):
        latency, forward = await timed_request(bodies[i % len(bodies)])
        t1 = time.perf_counter()
        family.plan_embed([EmbedInput(text=texts[i % len(texts)])], opts)
        tok.append(time.perf_counter() - t1)
        req.append(latency)
        fwd.append(forward)
        i += 1

    async def replayed(count: int, skip: int) -> list[float]:
        out: list[float] = []
        for j in range(count):
            latency, forward = await timed_request(bodies[j % len(bodies)])
            if j >= skip:
                out.append(latency - forward)
        return out

    noop = True
    # Control: the forward replaced by an idle pause as long as the real forward (time.sleep: no computation,
    # no memory traffic), subtracted the same way. Shows what an idle gap alone does to the code around it.
    pause_s = statistics.median(fwd)
    pause_diffs = await replayed(min(i, 300), 0)
    # The same requests back to back, nothing between them: the serving path's own cost.
    pause_s = 0.0
    noop_diffs = await replayed(i + 20, 20)  # the first 20 warm the caches back up
    registry.close(True)
    p50_req, p50_fwd = statistics.median(req), statistics.median(fwd)
    diffs = [a - b for a, b in zip(req, fwd, strict=True)]  # each request minus its own forward
    return {
        "iterations": len(req),
        "request_p50_ms": p50_req * 1e3,
        "request_p99_ms": _pct(req, 0.99) * 1e3,
        "forward_p50_ms": p50_fwd * 1e3,
        "tokenize_p50_ms": statistics.median(tok) * 1e3,
        "overhead_p50_ms": statistics.median(diffs) * 1e3,
        "overhead_p99_ms": _pct(diffs, 0.99) * 1e3,
        "overhead_medians_ms": (p50_req - p50_fwd) * 1e3,
        "noop_overhead_p50_ms": statistics.median(noop_diffs) * 1e3,
        "pause_overhead_p50_ms": statistics.median(pause_diffs) * 1e3,
        "noop_overhead_p99_ms": _pct(noop_diffs, 0.99) * 1e3,
    }


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    spec = orjson.loads(Path(args[0]).read_bytes())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    result = asyncio.run(measure(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
