"""In-process sentence-transformers baseline (the "Python ceiling"): no HTTP, no queue, no serialisation.

Run as `python -m benchmarks.st_baseline SPEC.json` in its own process, so its thread count and peak
RSS are its own. Prints one JSON object per workload on stdout (a JSON list).

- embed: `SentenceTransformer.encode(chunk, batch_size=32)` on chunks of `inputs_per_call` texts,
  back to back for `duration_s` (one call first, untimed, as warm-up).
- rerank: `CrossEncoder.predict([(query, doc), ...], batch_size=32)` the same way.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson


def _loop(call, chunks: list[list[str]], duration_s: float, max_calls: int = 1_000_000, min_calls: int = 0,
          max_duration_s: float | None = None) -> dict[str, Any]:
    """Calls back to back for at least `duration_s` and `min_calls` calls, at most `max_duration_s`."""
    call(chunks[0])  # warm-up
    lat: list[float] = []
    n_inputs = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    cap = max_duration_s or duration_s
    i = 0

    def more() -> bool:
        elapsed = time.perf_counter() - t0
        return elapsed < cap and (elapsed < duration_s or i < min_calls)

    while more() and i < max_calls:
        chunk = chunks[i % len(chunks)]
        i += 1
        s = time.perf_counter()
        call(chunk)
        lat.append(time.perf_counter() - s)
        n_inputs += len(chunk)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {"ok": True, "requests": len(lat), "inputs": n_inputs, "wall_s": wall, "latencies_s": sorted(lat),
            "errors": [], "n_errors": 0, "engine_cpu_s": cpu, "engine_cpu_inputs": n_inputs}


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    spec = orjson.loads(Path(args[0]).read_bytes())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    dtype = getattr(torch, spec.get("dtype") or "float32")
    sizing = {"min_calls": int(spec.get("min_calls", 0)), "max_duration_s": spec.get("max_duration_s")}
    out: list[dict[str, Any]] = []
    if spec["kind"] == "embed":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(spec["model_dir"], device="cpu").to(dtype)
        if spec.get("check_texts"):  # reference vectors for the engines' agreement check
            ref = model.encode(spec["check_texts"], convert_to_numpy=True, normalize_embeddings=True)
            out.append({"key": "__reference__", "vectors": ref.tolist()})
        for w in spec["workloads"]:
            k = w["inputs_per_call"]
            pool = w["texts"]
            chunks = [[pool[(c * k + j) % len(pool)] for j in range(k)] for c in range(16)]
            res = _loop(lambda ch: model.encode(ch, batch_size=32, convert_to_numpy=True), chunks,
                        w["duration_s"], **sizing)
            res["key"] = w["key"]
            res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out.append(res)
    else:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(spec["model_dir"], device="cpu", max_length=512)
        for w in spec["workloads"]:
            k = w["inputs_per_call"]
            pool = w["texts"]
            chunks = [[pool[(c * k + j) % len(pool)] for j in range(k)] for c in range(4)]
            query = w["query"]
            res = _loop(lambda ch, q=query: model.predict([(q, d) for d in ch], batch_size=32), chunks,
                        w["duration_s"], **sizing)
            res["key"] = w["key"]
            res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out.append(res)
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
