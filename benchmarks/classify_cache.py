"""What the zero-shot label cache saves, and what few-shot training costs, over real HTTP on MiniLM.

    python -m benchmarks.classify_cache [--rounds 15] [--labels 64] [--inputs 8]

One server (uvicorn on 127.0.0.1 in this process, the bundled all-MiniLM-L6-v2). Each round, interleaved so
machine noise hits every variant alike:
- `embed`: POST /v1/embeddings with the round's inputs only (the floor: the inputs' forward passes);
- `cold`:  POST /v1/classify with those inputs and a label set never seen before (labels embedded);
- `warm`:  the same request again (labels from the cache);
- `train`: POST /v1/train, 8 examples × 4 labels, num_iters 10 (a fresh classifier each round);
- `fewshot`: POST /v1/classify with that classifier_id and the round's inputs.
Prints the CPU (lscpu model and flags) and, per variant, the median and the 25th/75th percentiles in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import uvicorn

from jinaserve.api.app import create_app
from jinaserve.config import Settings


def cpu() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return (f"{fields.get('Model name', '?').strip()}; CPUs {fields.get('CPU(s)', '?').strip()}; "
            f"flags {fields.get('Flags', '?').strip()}")


@contextlib.contextmanager
def server(data_dir: str) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(Settings(models=["all-MiniLM-L6-v2"], offline=True, device="cpu", data_dir=data_dir),
                     load_in_background=False)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--labels", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=8)
    args = ap.parse_args()
    print(cpu())
    times: dict[str, list[float]] = {k: [] for k in ("embed", "cold", "warm", "train", "fewshot")}
    examples = [{"text": f"example {i} about {topic}", "label": topic}
                for topic in ("sports", "money", "food", "travel") for i in range(2)]
    with server(tempfile.mkdtemp()) as url, httpx.Client(base_url=url, timeout=300) as c:

        def timed(name: str, path: str, body: dict) -> dict:
            t = time.perf_counter()
            r = c.post(path, json=body)
            times[name].append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            return r.json()

        for _ in range(2):  # warm-up: first-call costs out of the figures
            timed("embed", "/v1/embeddings", {"input": ["warm up"]})
        for k in times:
            times[k].clear()
        for rnd in range(args.rounds):
            tag = uuid.uuid4().hex[:8]
            inputs = [f"round {rnd} input {i}: the committee discussed the budget" for i in range(args.inputs)]
            labels = [f"category {j} {tag}" for j in range(args.labels)]
            timed("embed", "/v1/embeddings", {"input": inputs})
            timed("cold", "/v1/classify", {"input": inputs, "labels": labels})
            timed("warm", "/v1/classify", {"input": inputs, "labels": labels})
            cid = timed("train", "/v1/train", {"input": examples, "num_iters": 10})["classifier_id"]
            timed("fewshot", "/v1/classify", {"classifier_id": cid, "input": inputs})
            c.delete(f"/v1/classifiers/{cid}")
    print(f"rounds {args.rounds}, {args.inputs} inputs, {args.labels} labels")
    for name, xs in times.items():
        q = statistics.quantiles(xs, n=4)
        print(f"{name:8s} median {statistics.median(xs):8.1f} ms   p25 {q[0]:8.1f}   p75 {q[2]:8.1f}")


if __name__ == "__main__":
    main()
