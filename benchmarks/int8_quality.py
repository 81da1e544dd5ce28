"""int8 quality and speed on the real all-MiniLM-L6-v2: why `--quantize int8` is ONNX Runtime.

    .venv/bin/python -m benchmarks.int8_quality [--texts 1000] [--threads 2] [--json PATH]

Over `--texts` varied texts (sentences, code, German, word lists of 3–150 words), against float32 torch:
  - min and mean cosine of the unit vectors;
  - Spearman correlation of rerank orders: 20 queries, each ranking 50 of the texts by cosine, float32 order vs
    the candidate's order (mean over queries), and whether the top-10 set is the same;
  - throughput of `Embedder.encode` on the same texts (in-process, 32 per batch), interleaved, median of 3.
Candidates: torch bfloat16; `--quantize int8` (ONNX Runtime dynamic int8, FFN down-projections in float);
torch dynamic int8 (`torch.ao.quantization.quantize_dynamic`, every Linear; and every Linear but the FFN
down-projections), measured in this process for the record (the torch API is deprecated upstream in favour of
torchao). Prints a Markdown section; `--json` writes it with the figures and targets for `run_all`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .textgen import minilm_dir

SENTENCES = ["How do I reset my password?", "Paris is the capital of France.", "The quick brown fox jumps over "
             "the lazy dog.", "Machine learning models need a lot of data.", "Der Hund schläft im Garten.",
             "Stock prices fell sharply on Monday after the announcement.", "def add(a, b): return a + b",
             "SELECT name FROM users WHERE age > 30;", "La tour Eiffel est à Paris.", "What time is it in Tokyo?"]


def varied_texts(n: int, seed: int = 0) -> list[str]:
    from .textgen import vocabulary

    vocab = vocabulary()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 4 == 0:
            base = rng.choice(SENTENCES)
            out.append(base if rng.random() < 0.5 else f"{base} {' '.join(rng.choice(vocab) for _ in range(8))}")
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(rng.choice((3, 8, 20, 60, 150)))))
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(-a))
    rb = np.argsort(np.argsort(-b))
    n = len(a)
    return float(1 - 6 * ((ra - rb) ** 2).sum() / (n * (n * n - 1)))


def rerank_agreement(ref: np.ndarray, got: np.ndarray, seed: int = 1) -> tuple[float, float]:
    """(mean Spearman over 20 queries × 50 candidates, share of queries with the same top-10 set)."""
    rng = np.random.default_rng(seed)
    rhos, same = [], 0
    for _ in range(20):
        idx = rng.choice(len(ref), size=51, replace=False)
        q, docs = idx[0], idx[1:]
        s_ref, s_got = ref[docs] @ ref[q], got[docs] @ got[q]
        rhos.append(spearman(s_ref, s_got))
        same += set(np.argsort(-s_ref)[:10]) == set(np.argsort(-s_got)[:10])
    return float(np.mean(rhos)), same / 20


def _torch_int8(model: Any, skip_ffn_down: bool) -> Any:
    import torch
    from torch.ao.quantization import quantize_dynamic

    from jinaserve.runtimes.int8_runtime import FLOAT_LINEARS

    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
             and not (skip_ffn_down and FLOAT_LINEARS.search(n))}
    return quantize_dynamic(copy.deepcopy(model), names, dtype=torch.qint8)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore")
    from jinaserve import Embedder

    texts = varied_texts(args.texts)
    folder = f"minilm={minilm_dir()}"
    cache = tempfile.mkdtemp(prefix="jinaserve-int8-")
    common = {"device": "cpu", "offline": True, "threads": args.threads, "cache_dir": cache}
    embedders = {"float32": Embedder(folder, dtype="float32", **common),
                 "bfloat16": Embedder(folder, dtype="bfloat16", **common)}
    t0 = time.perf_counter()
    embedders["int8 (ONNX Runtime, --quantize int8)"] = Embedder(folder, dtype="float32", quantize="int8", **common)
    build_s = time.perf_counter() - t0
    fam = embedders["float32"]._service.family
    for label, skip in (("torch dynamic int8, every Linear", False),
                        ("torch dynamic int8, FFN down-projections in float", True)):
        e = Embedder(folder, dtype="float32", **common)
        e._service.family.model = _torch_int8(fam.model, skip)
        e._service.family.backbone = type(fam.backbone)(e._service.family.model)
        embedders[label] = e
    vectors = {k: e.encode(texts) for k, e in embedders.items()}
    speed: dict[str, list[float]] = {k: [] for k in embedders}
    sample = texts[:256]
    for _ in range(3):  # interleaved rounds
        for k, e in embedders.items():
            t = time.perf_counter()
            e.encode(sample)
            speed[k].append(len(sample) / (time.perf_counter() - t))
    for e in embedders.values():
        e.close()
    ref = vectors["float32"]
    base = statistics.median(speed["float32"])
    rows, figures = [], {}
    for k, v in vectors.items():
        cos = (ref * v).sum(1)
        rho, top10 = rerank_agreement(ref, v)
        sps = statistics.median(speed[k])
        figures[k] = {"min_cos": float(cos.min()), "mean_cos": float(cos.mean()), "spearman": rho, "top10_same": top10,
                      "texts_s": sps, "speedup": sps / base}
        rows.append(f"| {k} | {cos.min():.4f} | {cos.mean():.4f} | {rho:.4f} | {100 * top10:.0f}% | {sps:,.1f} | "
                    f"{sps / base:.2f}× |")
    from .machine import machine_info

    m = machine_info(args.threads)
    md = "\n".join([
        "## int8 quality (all-MiniLM-L6-v2, real weights)", "",
        f"`python -m benchmarks.int8_quality --texts {args.texts} --threads {args.threads}` on {m['cpu']} "
        f"(`{' '.join(m['key_flags'])}`), load {m['loadavg_start']}. {args.texts} varied texts; cosine of unit "
        f"vectors against float32 torch; rerank agreement over 20 queries × 50 candidates (mean Spearman, share "
        f"of identical top-10 sets); speed = `Embedder.encode` of 256 of the texts, median of 3 interleaved "
        f"rounds, {args.threads} threads. The int8 graph was built (export + quantisation) in {build_s:.0f} s, "
        f"once; later loads reuse it.", "",
        "| path | min cosine | mean cosine | Spearman | same top-10 | texts/s | × float32 |",
        "|---|---:|---:|---:|---:|---:|---:|", *rows])
    int8 = figures["int8 (ONNX Runtime, --quantize int8)"]
    targets = [{"target": "`--quantize int8` mean cosine to float32 (MiniLM, varied texts)", "value": int8["mean_cos"],
                "goal": 0.99, "unit": "cos", "met": int8["mean_cos"] >= 0.99, "key": "int8", "lower_is_better": False,
                "against": "float32", "precision": "int8"},
               {"target": "`--quantize int8` vs float32 in-process throughput (MiniLM)", "value": int8["speedup"],
                "goal": 1.8, "unit": "×", "met": int8["speedup"] >= 1.8, "key": "int8", "lower_is_better": False,
                "against": "float32", "precision": "int8"}]
    print(md)
    if args.json:
        args.json.write_text(json.dumps({"markdown": md, "figures": figures, "targets": targets, "machine": m}))


if __name__ == "__main__":
    main()
