"""Load generator: N async httpx clients, each sending requests back to back for a bounded time.

Runs in its own process (never inside the server's), started by `run_all` as
`python -m benchmarks.loadgen SPEC.json` and printing one JSON object on stdout.

Every response is checked (status 200, one result per input, vector width for embeddings), so an
engine cannot look fast by failing. Request bodies are built and serialised before the clock starts.
"""

from __future__ import annotations

import asyncio
import base64
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson


@dataclass
class LoadSpec:
    base_url: str
    model: str
    kind: str  # "embed" | "rerank"
    api: str  # "jina" (jinaserve) | "infinity"
    clients: int
    inputs_per_request: int  # texts per embeddings request; documents per rerank request
    texts: list[str]  # pool of inputs (embed) or documents (rerank)
    query: str = ""
    fmt: str = "base64"  # float | base64 (embeddings)
    dims: int | None = None
    duration_s: float = 3.0
    timeout_s: float = 300.0
    max_requests: int = 1_000_000  # safety bound on top of the duration

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadSpec:
        return cls(**d)


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    inputs: int = 0
    errors: list[str] = field(default_factory=list)


def build_bodies(spec: LoadSpec, client_idx: int, n: int = 16, k: int | None = None) -> list[bytes]:
    """`n` distinct request bodies for one client (cycled), drawn from the text pool without overlap
    between clients while the pool lasts; `k` inputs each (default: the workload's)."""
    pool = spec.texts
    k = k or spec.inputs_per_request
    bodies: list[bytes] = []
    for r in range(n):
        start = (client_idx * n + r) * k
        chunk = [pool[(start + j) % len(pool)] for j in range(k)]
        if spec.kind == "embed":
            body: dict[str, Any] = {"model": spec.model, "input": chunk}
            if spec.api == "jina":
                body["embedding_type"] = spec.fmt
            else:
                body["encoding_format"] = spec.fmt
        else:
            body = {"model": spec.model, "query": spec.query, "documents": chunk, "return_documents": False}
        bodies.append(orjson.dumps(body))
    return bodies


def endpoint(spec: LoadSpec) -> str:
    if spec.api == "jina":
        return "/v1/embeddings" if spec.kind == "embed" else "/v1/rerank"
    return "/embeddings" if spec.kind == "embed" else "/rerank"


def check_response(spec: LoadSpec, status: int, content: bytes, expect: int | None = None) -> str | None:
    """None if the response is a correct answer to the request (`expect` results), else why not."""
    expect = expect or spec.inputs_per_request
    if status != 200:
        return f"HTTP {status}: {content[:200]!r}"
    body = orjson.loads(content)
    if spec.kind == "embed":
        data = body.get("data") or []
        if len(data) != expect:
            return f"{len(data)} embeddings for {expect} inputs"
        first = data[0]["embedding"]
        width = len(base64.b64decode(first)) // 4 if isinstance(first, str) else len(first)
        if spec.dims is not None and width != spec.dims:
            return f"vector width {width}, expected {spec.dims}"
        return None
    results = body.get("results") or []
    if len(results) != expect:
        return f"{len(results)} rerank results for {expect} documents"
    return None


async def _client(client: httpx.AsyncClient, spec: LoadSpec, path: str, bodies: list[bytes],
                  deadline: float, phase: Phase, budget: list[int], once: bool, expect: int | None = None) -> None:
    i = 0
    headers = {"content-type": "application/json"}
    while once or time.perf_counter() < deadline:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = await client.post(path, content=body, headers=headers)
            problem = check_response(spec, r.status_code, r.content, expect)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        if problem is None:
            phase.latencies.append(elapsed)
            phase.inputs += expect or spec.inputs_per_request
        else:
            phase.errors.append(problem)
        if once:
            return


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    # Idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout closes them
    # under it (which would surface as a ReadError on the next request).
    limits = httpx.Limits(max_connections=spec.clients, max_keepalive_connections=spec.clients,
                          keepalive_expiry=2.0)
    timeout = httpx.Timeout(spec.timeout_s)
    path = endpoint(spec)
    all_bodies = [build_bodies(spec, c) for c in range(spec.clients)]
    async with httpx.AsyncClient(base_url=spec.base_url, limits=limits, timeout=timeout) as client:
        # Warm-up: one 1-input request per client at once (opens the connections, warms the model).
        warm = Phase()
        await asyncio.gather(*[_client(client, spec, path, build_bodies(spec, c, n=1, k=1), 0.0, warm, [1], True,
                                       expect=1) for c in range(spec.clients)])
        if warm.errors:
            return {"ok": False, "errors": warm.errors[:5]}
        phase = Phase()
        budget = [spec.max_requests]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        deadline = t0 + spec.duration_s
        await asyncio.gather(*[_client(client, spec, path, all_bodies[c], deadline, phase, budget, False)
                               for c in range(spec.clients)])
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = sorted(phase.latencies)
    return {
        "ok": not phase.errors and bool(lat),
        "errors": phase.errors[:5],
        "n_errors": len(phase.errors),
        "requests": len(lat),
        "inputs": phase.inputs,
        "warm_inputs": warm.inputs,
        "wall_s": wall,
        "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "latencies_s": lat,
    }


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    spec = LoadSpec.from_dict(orjson.loads(Path(args[0]).read_bytes()))
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run_load(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
