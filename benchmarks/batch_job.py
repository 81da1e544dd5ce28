"""Batch jobs vs online traffic on MiniLM, measured back to back in ONE run on one server:

1. throughput: the `make bench` 8×32 HTTP cell (8 clients × 32 short texts, base64) for D seconds, then a job
   of N short texts (OpenAI Batch API: one `/v1/embeddings` line per text, base64), then 8×32 again, then the
   same N texts through `jinaserve batch run` (in-process, .npy out). Ratio = job texts/s ÷ mean 8×32 inputs/s.
2. fairness: one online client (closed loop, 8 short texts per request) for P seconds idle, with a job
   running on the same model, idle again (interleaved rounds); online p50/p99 each time.

    .venv/bin/python -m benchmarks.batch_job [--texts 100000] [--http-s 30] [--probe-s 20] [--rounds 2]

Prints the CPU (lscpu model and flags) with the figures and writes benchmarks/results/batch_job.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from . import engines
from .loadgen import LoadSpec, run_load
from .textgen import SHORT_WORDS, make_texts, minilm_dir

ROOT = Path(__file__).resolve().parents[1]


def lscpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    keep = [line for line in out.splitlines() if line.split(":")[0].strip() in ("Model name", "CPU(s)", "Flags")]
    return "\n".join(keep)


def http_cell(url: str, texts: list[str], clients: int, per_request: int, seconds: float) -> dict:
    spec = LoadSpec(base_url=url, model="minilm", kind="embed", api="jina", clients=clients,
                    inputs_per_request=per_request, texts=texts, fmt="base64", dims=384, duration_s=seconds)
    res = asyncio.run(run_load(spec))
    assert res["ok"], res["errors"]
    lat = res["latencies_s"]
    return {"inputs_per_s": res["inputs"] / res["wall_s"], "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], "requests": len(lat)}


def start_job(client: httpx.Client, texts: list[str]) -> str:
    lines = "".join(json.dumps({"custom_id": str(i), "method": "POST", "url": "/v1/embeddings",
                                "body": {"model": "minilm", "input": t, "encoding_format": "base64"}}) + "\n"
                    for i, t in enumerate(texts))
    f = client.post("/v1/files", files={"file": ("job.jsonl", io.BytesIO(lines.encode()))},
                    data={"purpose": "batch"}).json()
    b = client.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/embeddings",
                                         "completion_window": "24h"}).json()
    return b["id"]


def wait_batch(client: httpx.Client, batch_id: str, timeout: float = 3600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.get(f"/v1/batches/{batch_id}").json()
        if b["status"] in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(0.2)
    raise TimeoutError(batch_id)


def server_job(client: httpx.Client, texts: list[str]) -> dict:
    batch_id = start_job(client, texts)
    b = wait_batch(client, batch_id)
    assert b["status"] == "completed" and b["request_counts"]["completed"] == len(texts), b
    seconds = b["completed_at"] - b["in_progress_at"]  # whole seconds: the API's own timestamps
    return {"texts_per_s": len(texts) / max(seconds, 1), "seconds": seconds}


def cli_job(texts: list[str], tmp: Path, threads: int) -> dict:
    src = tmp / "cli.txt"
    src.write_text("\n".join(texts) + "\n")
    cmd = [str(Path(sys.executable).parent / "jinaserve"), "batch", "run", str(src), "--out", str(tmp / "cli.npy"),
           "-m", f"minilm={minilm_dir()}", "--offline", "--data-dir", str(tmp / "cli-data"), "--threads",
           str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=engines.thread_env(threads), timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"(\d+) rows in ([\d.]+) s", r.stderr)
    assert m, r.stderr
    return {"texts_per_s": int(m.group(1)) / float(m.group(2)), "seconds": float(m.group(2))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--http-s", type=float, default=30.0)
    ap.add_argument("--probe-s", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    cpu = lscpu()
    print(cpu, flush=True)
    pool = make_texts(4099, SHORT_WORDS, seed=1)  # the 8×32 cell's texts (benchmarks/workloads.py)
    job_texts = make_texts(args.texts, SHORT_WORDS, seed=7)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = engines.jinaserve_server("jinaserve-batch", [f"minilm={minilm_dir()}"], threads=args.threads,
                                          logs=tmp, extra_args=["--data-dir", str(tmp / "data")])
        server.env = {**server.env, "JINASERVE_BATCH_MAX_LINES": str(max(args.texts, 50000))}
        rows: list[str] = []
        with server, httpx.Client(base_url=server.url, timeout=120) as client:
            http = [http_cell(server.url, pool, 8, 32, args.http_s)]
            print(f"8x32 HTTP: {http[-1]['inputs_per_s']:.0f} inputs/s", flush=True)
            job = server_job(client, job_texts)
            print(f"server job: {job['texts_per_s']:.0f} texts/s", flush=True)
            http.append(http_cell(server.url, pool, 8, 32, args.http_s))
            print(f"8x32 HTTP: {http[-1]['inputs_per_s']:.0f} inputs/s", flush=True)
            cli = cli_job(job_texts, tmp, args.threads)
            print(f"cli job: {cli['texts_per_s']:.0f} texts/s", flush=True)
            online = statistics.mean(h["inputs_per_s"] for h in http)
            spread = max(h["inputs_per_s"] for h in http) - min(h["inputs_per_s"] for h in http)
            rows.append(f"| 8×32 HTTP (base64), mean of {len(http)} | {online:.0f} inputs/s (spread {spread:.0f}) | |")
            rows.append(f"| job of {args.texts} texts via the OpenAI Batch API | {job['texts_per_s']:.0f} texts/s "
                        f"| **{job['texts_per_s'] / online:.2f}×** |")
            rows.append(f"| job of {args.texts} texts via `jinaserve batch run` | {cli['texts_per_s']:.0f} texts/s "
                        f"| **{cli['texts_per_s'] / online:.2f}×** |")
            idle, busy = [], []
            for _ in range(args.rounds):
                idle.append(http_cell(server.url, pool, 1, 8, args.probe_s))
                batch_id = start_job(client, job_texts[:50_000])
                time.sleep(2.0)
                busy.append(http_cell(server.url, pool, 1, 8, args.probe_s))
                progress = client.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"]
                client.post(f"/v1/batches/{batch_id}/cancel")
                wait_batch(client, batch_id)
                print(f"probe idle p99 {idle[-1]['p99_ms']:.1f} ms, with job p99 {busy[-1]['p99_ms']:.1f} ms "
                      f"(job did {progress} lines meanwhile)", flush=True)
            idle.append(http_cell(server.url, pool, 1, 8, args.probe_s))
        p99_idle = statistics.median(r["p99_ms"] for r in idle)
        p99_busy = statistics.median(r["p99_ms"] for r in busy)
        rows.append(f"| online 1×8 p99 idle (median of {len(idle)} rounds) | {p99_idle:.1f} ms "
                    f"(p50 {statistics.median(r['p50_ms'] for r in idle):.1f} ms) | |")
        rows.append(f"| online 1×8 p99 with a job running (median of {len(busy)} rounds) | {p99_busy:.1f} ms "
                    f"(p50 {statistics.median(r['p50_ms'] for r in busy):.1f} ms) | **{p99_busy / p99_idle:.2f}×** |")
    cmd = "python -m benchmarks.batch_job " + " ".join(argv if argv is not None else sys.argv[1:])
    report = (f"# Batch jobs vs online traffic (MiniLM)\n\n`{cmd.strip()}`, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
              f"```\n{cpu}\n```\n\n| what | figure | ratio |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    print(report)
    out = ROOT / "benchmarks" / "results" / "batch_job.md"
    out.write_text(report)


if __name__ == "__main__":
    main()
