"""Back-pressure under overload: 64 clients sending long texts to a real server process.

Issue 11 item 5 measured, with default settings, 58 client timeouts at 120 s and zero 429s: the queue
limit counted items, so waits grew without bound. This script reproduces that load against a real
`jinaserve serve` process (the bundled all-MiniLM-L6-v2, offline, default settings) and counts what the
clients saw: 200s, 429s (with their Retry-After), client timeouts and anything else.

Each client sends requests of `--texts` texts of 150-400 words back to back for `--seconds`; on a 429 it
waits the Retry-After seconds (at most 30) as the OpenAI SDK does, then goes on. A request with no answer
after `--timeout` seconds is a client timeout (requests sent before the end are all waited for).

    python -m benchmarks.backpressure                      # this checkout
    python -m benchmarks.backpressure --src /path/to/src   # another checkout's code (PYTHONPATH)

Prints the CPU (lscpu model and flags) and one JSON object with the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import httpx

VOCAB = [
    "the", "server", "model", "request", "vector", "token", "batch", "query", "document", "river",
    "mountain", "apple", "engine", "queue", "latency", "memory", "search", "result", "answer", "question",
    "image", "text", "language", "meaning", "distance", "index", "cluster",
]


def long_texts(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(150, 400))) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()} | CPUs {fields.get('CPU(s)', '?').strip()} | flags: " \
           f"{fields.get('Flags', '').strip()}"


async def _client(i: int, url: str, model: str, texts: int, deadline: float, timeout: float, max_retry_sleep: float,
                  out: dict) -> None:
    rng = random.Random(i)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as c:
        while time.perf_counter() < deadline:
            body = {"model": model, "input": long_texts(rng, texts), "truncate": True}
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/embeddings", json=body)
            except httpx.TimeoutException:
                out["timeouts"] += 1
                continue
            except httpx.HTTPError as exc:
                out["errors"].append(repr(exc))
                continue
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                out["ok"].append(dt)
            elif r.status_code == 429:
                retry = int(r.headers.get("retry-after", "1"))
                out["rejected"].append(dt)
                out["retry_after"].append(retry)
                if len(out["rejected_details"]) < 5:
                    out["rejected_details"].append(r.json().get("detail"))
                await asyncio.sleep(min(max_retry_sleep, retry))
            else:
                out["other"].append(f"{r.status_code}: {r.text[:120]}")


async def overload(url: str, *, model: str, clients: int, texts: int, seconds: float, timeout: float,
                   max_retry_sleep: float = 30.0) -> dict:
    """`clients` clients sending `texts` long texts per request for `seconds`; what they saw: 200 latencies
    (`ok`), 429 latencies, Retry-After values and the first details, client timeouts, errors, other statuses."""
    out: dict = {"ok": [], "rejected": [], "retry_after": [], "rejected_details": [], "timeouts": 0, "errors": [],
                 "other": []}
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_client(i, url, model, texts, deadline, timeout, max_retry_sleep, out)
                           for i in range(clients)))
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--texts", type=int, default=8, help="texts per request")
    parser.add_argument("--seconds", type=float, default=150.0, help="how long clients send new requests")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request")
    parser.add_argument("--src", help="PYTHONPATH for the server (another checkout's src/)")
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JINASERVE_LOG_LEVEL": "warning"}
    if args.src:
        env["PYTHONPATH"] = args.src
    proc = subprocess.Popen([sys.executable, "-m", "jinaserve", "serve", "--models", "all-MiniLM-L6-v2", "--offline",
                             "--host", "127.0.0.1", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        started = time.perf_counter()
        out = asyncio.run(overload(url, model="all-MiniLM-L6-v2", clients=args.clients, texts=args.texts,
                                   seconds=args.seconds, timeout=args.timeout))
        elapsed = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    not_ok = len(out["rejected"]) + out["timeouts"] + len(out["errors"]) + len(out["other"])
    print("CPU:", cpu())
    print(json.dumps({
        "server_src": args.src or "this checkout", "clients": args.clients, "texts_per_request": args.texts,
        "seconds": round(elapsed, 1), "client_timeout_s": args.timeout,
        "served_200": len(out["ok"]), "rejected_429": len(out["rejected"]), "client_timeouts": out["timeouts"],
        "transport_errors": len(out["errors"]), "other_status": out["other"][:5],
        "share_429_of_not_ok": round(len(out["rejected"]) / not_ok, 3) if not_ok else None,
        "share_timeouts_of_not_ok": round(out["timeouts"] / not_ok, 3) if not_ok else None,
        "ok_latency_p50_s": percentile(out["ok"], 0.5), "ok_latency_p99_s": percentile(out["ok"], 0.99),
        "retry_after_p50_s": percentile([float(x) for x in out["retry_after"]], 0.5),
        "retry_after_max_s": max(out["retry_after"]) if out["retry_after"] else None,
    }, indent=1))


if __name__ == "__main__":
    main()
