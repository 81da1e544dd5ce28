"""Load generator: N async clients, each sending requests back to back for a bounded time.

Runs in its own process (never inside the server's), started by `run_all` as
`python -m benchmarks.loadgen SPEC.json` and printing one JSON object on stdout.

Every response is checked (status 200, one result per input, vector width for embeddings), so an
engine cannot look fast by failing. Request bodies (and their HTTP/1.1 headers) are built before the
clock starts.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (one connection per client), not
httpx: on this 2-core machine the load generator shares the cores with the server under test, and httpx
cost 7–9 ms of client CPU per request at 64 concurrent connections (a quarter to 40% of a core taken
from the engine in the 64×1 cells). This client costs a small fraction of that, the same for every
engine.
"""

from __future__ import annotations

import asyncio
import base64
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    duration_s: float = 3.0  # at least this long ...
    timeout_s: float = 300.0
    max_requests: int = 1_000_000  # safety bound on top of the duration
    min_requests: int = 0  # ... and at least this many completed requests ...
    max_duration_s: float | None = None  # ... but never longer than this (None: duration_s)
    hot_fraction: float = 0.0  # share of inputs drawn from a small hot set (cache workloads)
    hot_count: int = 0

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
    hot = pool[:spec.hot_count]
    cold = pool[spec.hot_count:] or pool
    rng = random.Random(client_idx)
    for r in range(n):
        start = (client_idx * n + r) * k
        if hot and spec.hot_fraction:
            chunk = [rng.choice(hot) if rng.random() < spec.hot_fraction else cold[(start + j) % len(cold)]
                     for j in range(k)]
        else:
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


class HTTPError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection: POST a pre-built request, read one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        reused = self.writer is not None
        if not reused:
            await self._open()
        try:
            return await self._exchange(raw)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.close()
            # The server closed an idle keep-alive connection before our request reached it: retry once.
            if reused and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial):
                await self._open()
                return await self._exchange(raw)
            raise

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HTTPError(f"bad status line {lines[0][:100]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if chunked:
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            content = bytes(body)
        elif length is not None:
            content = await self.reader.readexactly(length)
        else:  # body delimited by the connection closing
            content = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, content


def raw_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _done(spec: LoadSpec, t0: float, phase: Phase) -> bool:
    """A cell runs at least `duration_s` and `min_requests` completed requests, at most `max_duration_s`."""
    elapsed = time.perf_counter() - t0
    if elapsed >= (spec.max_duration_s or spec.duration_s):
        return True
    return elapsed >= spec.duration_s and len(phase.latencies) + len(phase.errors) >= spec.min_requests


async def _client(conn: Connection, spec: LoadSpec, requests: list[bytes], t0: float, phase: Phase,
                  budget: list[int], once: bool, expect: int | None = None) -> None:
    i = 0
    while once or not _done(spec, t0, phase):
        if budget[0] <= 0:
            return
        budget[0] -= 1
        raw = requests[i % len(requests)]
        i += 1
        sent = time.perf_counter()
        try:
            status, content = await asyncio.wait_for(conn.request(raw), spec.timeout_s)
            problem = check_response(spec, status, content, expect)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                HTTPError, ValueError) as exc:
            conn.close()
            problem = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - sent
        if problem is None:
            phase.latencies.append(elapsed)
            phase.inputs += expect or spec.inputs_per_request
        else:
            phase.errors.append(problem)
        if once:
            return


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    url = urlsplit(spec.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = endpoint(spec)

    def raws(bodies: list[bytes]) -> list[bytes]:
        return [raw_request(host, port, path, b) for b in bodies]

    all_requests = [raws(build_bodies(spec, c, n=64 if spec.hot_fraction else 16)) for c in range(spec.clients)]
    conns = [Connection(host, port) for _ in range(spec.clients)]
    try:
        # Warm-up: one 1-input request per client at once (opens the connections, warms the model).
        warm = Phase()
        await asyncio.gather(*[_client(conns[c], spec, raws(build_bodies(spec, c, n=1, k=1)), 0.0, warm, [1],
                                       True, expect=1) for c in range(spec.clients)])
        if warm.errors:
            return {"ok": False, "errors": warm.errors[:5]}
        if spec.hot_count and spec.kind == "embed":
            # Steady state of a repeated-query workload: every hot query has been seen once before the clock
            # starts (for every engine alike: one without a cache simply computes them).
            hot = spec.texts[:spec.hot_count]
            for i in range(0, len(hot), 32):
                chunk = hot[i:i + 32]
                body: dict[str, Any] = {"model": spec.model, "input": chunk}
                body["embedding_type" if spec.api == "jina" else "encoding_format"] = spec.fmt
                status, content = await conns[0].request(raw_request(host, port, path, orjson.dumps(body)))
                problem = check_response(spec, status, content, len(chunk))
                if problem:
                    return {"ok": False, "errors": [f"hot-set warm-up: {problem}"]}
        phase = Phase()
        budget = [spec.max_requests]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*[_client(conns[c], spec, all_requests[c], t0, phase, budget, False)
                               for c in range(spec.clients)])
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for conn in conns:
            conn.close()
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
