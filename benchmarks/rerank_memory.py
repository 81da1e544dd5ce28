"""Reranker speed and memory on random-weight checkpoints in the published layouts.

    # peak RSS and time of one rerank of 100 documents × 2,000 characters (jina-reranker-v3)
    python -m benchmarks.rerank_memory memory --size tiny --threads 2
    python -m benchmarks.rerank_memory memory --size real --threads 2 [--layers 28] [--block-tokens N]
    # documents/s (= query-document pairs/s) for 50- and 500-token documents
    python -m benchmarks.rerank_memory throughput --model v3 --size real --doc-tokens 50 500 --docs 32
    python -m benchmarks.rerank_memory throughput --model v2 --size real --doc-tokens 50 500 --docs 32

`--size real` is the Qwen3-0.6B shape (28 layers, hidden 1024, 16/8 heads, vocab 151936) for v3 and the
XLM-RoBERTa-base shape (12 layers, hidden 768, vocab 250002) for v2; `--size tiny` the test checkpoints.
Weights are random (speed and memory depend on shapes only); the tokenizer is the tests' small BPE, so
the script prints the real token counts. The checkpoint is built in a child process, so the measured
process's peak RSS (VmHWM) covers only loading and ranking. Prints one JSON object; `rerank_cpu_s` /
`cpu_seconds` (CPU time of all threads) are given next to wall time because a shared machine's load
inflates wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "rerankers")]

XLMR_BASE = {"vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 1026}


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(model: str, size: str, layers: int | None, folder: Path) -> None:
    """Build in a child process (its memory is not counted)."""
    if model == "v3":
        cfg = "rr_builders.QWEN3_0_6B" if size == "real" else "{}"
        call = f"rr_builders.build_tiny_v3(folder, config_overrides={{**{cfg}, **extra}})"
    else:
        cfg = repr(XLMR_BASE) if size == "real" else "{}"
        call = f"rr_builders.build_tiny_v2(folder, config_overrides={{**{cfg}, **extra}})"
    extra = {"num_hidden_layers": layers} if layers else {}
    code = (f"import sys; sys.path[:0] = {[str(ROOT / 'tests'), str(ROOT / 'tests' / 'rerankers')]!r}\n"
            f"from pathlib import Path\nimport rr_builders\nfolder = Path({str(folder)!r})\nextra = {extra!r}\n"
            f"{call}\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def text_of_tokens(tokenizer, rng: random.Random, n_tokens: int) -> str:
    from rr_builders import WORDS

    words: list[str] = []
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
        words.extend(rng.choice(WORDS) for _ in range(8))
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def load(model: str, folder: Path, args: argparse.Namespace):
    from jinaserve import Reranker

    name = "jina-reranker-v3" if model == "v3" else "jina-reranker-v2-base-multilingual"
    return Reranker(f"{name}={folder}", device=args.device, dtype=args.dtype, threads=args.threads, offline=True,
                    rerank_block_tokens=args.block_tokens, max_batch_tokens=args.max_batch_tokens)


def cmd_memory(args: argparse.Namespace, folder: Path) -> dict:
    from rr_builders import random_text

    rng = random.Random(0)
    docs = [random_text(rng, args.chars) for _ in range(args.docs)]
    t0 = time.perf_counter()
    rr = load("v3", folder, args)
    load_s = time.perf_counter() - t0
    rss_loaded = vm_hwm_mib()
    fam = rr._service.family
    from jinaserve.jobs import RerankDocument, RerankJob

    plan = fam.plan_rerank(RerankJob("m", "which passage talks about music in the park?",
                                     [RerankDocument(text=d) for d in docs]))
    _cuda_reset(args.device)
    t0, c0 = time.perf_counter(), time.process_time()
    result = rr.rerank("which passage talks about music in the park?", docs)
    rerank_s, rerank_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    doc_tokens = [len(fam.tokenizer(d)["input_ids"]) for d in docs]
    out = {"case": f"{args.docs} docs x {args.chars} chars", "blocks": len(plan.items),
           "block_lengths": [it.n_tokens for it in plan.items], "doc_tokens_mean": sum(doc_tokens) / len(docs),
           "prompt_tokens": plan.total_tokens, "load_s": round(load_s, 2), "rerank_s": round(rerank_s, 2),
           "rerank_cpu_s": round(rerank_cpu_s, 2), "load_average": os.getloadavg(),
           "peak_rss_after_load_mib": round(rss_loaded), "peak_rss_mib": round(vm_hwm_mib()),
           "results": len(result), "context": fam.context}
    out.update(_cuda_peak(args.device))
    rr.close()
    return out


def cmd_throughput(args: argparse.Namespace, folder: Path) -> dict:
    rr = load(args.model, folder, args)
    tok = rr._service.family.tokenizer
    rng = random.Random(1)
    rows = []
    for n in args.doc_tokens:
        docs = [text_of_tokens(tok, rng, n) for _ in range(args.docs)]
        rr.rerank("music in the park", docs[: min(4, len(docs))])  # warm-up
        _cuda_reset(args.device)
        t0, c0 = time.perf_counter(), time.process_time()
        repeats = 0
        while True:
            rr.rerank("music in the park", docs)
            repeats += 1
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            if elapsed >= args.min_seconds or repeats >= args.max_repeats:
                break
        rows.append({"doc_tokens": n, "docs_per_request": len(docs), "requests": repeats,
                     "seconds": round(elapsed, 3), "pairs_per_s": round(repeats * len(docs) / elapsed, 2),
                     "cpu_seconds": round(cpu, 3), "load_average": os.getloadavg(),
                     **_cuda_peak(args.device)})
    rr.close()
    return {"throughput": rows, "peak_rss_mib": round(vm_hwm_mib())}


def _cuda_reset(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak(device: str) -> dict:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
        return {"cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20),
                "gpu": torch.cuda.get_device_name()}
    return {}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["memory", "throughput"])
    ap.add_argument("--model", choices=["v3", "v2"], default="v3")
    ap.add_argument("--size", choices=["tiny", "real"], default="tiny")
    ap.add_argument("--layers", type=int, default=None, help="override the layer count (real width kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | auto (jinaserve's --dtype)")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--doc-tokens", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--block-tokens", type=int, default=None, help="JINASERVE_RERANK_BLOCK_TOKENS")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--min-seconds", type=float, default=5.0)
    ap.add_argument("--max-repeats", type=int, default=20)
    ap.add_argument("--folder", type=Path, default=None, help="reuse/build the checkpoint here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    model = "v3" if args.command == "memory" else args.model
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "ckpt"
        if not (folder / "config.json").is_file():
            t0 = time.perf_counter()
            build(model, args.size, args.layers, folder)
            print(f"built {model} ({args.size}) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        out = cmd_memory(args, folder) if args.command == "memory" else cmd_throughput(args, folder)
    out = {"command": " ".join(["python -m benchmarks.rerank_memory", *(argv or sys.argv[1:])]),
           "model": model, "size": args.size, "layers": args.layers, "threads": args.threads,
           "device": args.device, "dtype": args.dtype, "block_tokens": args.block_tokens, **out}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
