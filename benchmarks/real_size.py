"""Real-size models (random weights at the published shapes): tokens/s and peak RSS per runtime and precision,
plus jina-reranker-v3 on 100 documents × 2,000 characters.

    .venv/bin/python -m benchmarks.real_size [--threads 2] [--models v3-size,v5-nano,code-0.5b,reranker-v3]
        [--precisions fp32,bf16,int8,q8_0,q4_k_m] [--no-rerank-100] [--json PATH] [--work DIR]

Models (speed and memory depend on shapes, not on weight values):
  v3-size      XLM-RoBERTa-large shape (24 × 1024, MLP 4096, 16 heads): what jina-embeddings-v3 costs per token
               in its default `merged` adapter mode (the task's LoRA merged into the Linear weights: the forward
               is exactly the base model's; `jinaserve.models.jina_v3`), served as a plain bi-encoder here so
               every runtime (int8, GGUF) can run it
  v5-nano      EuroBERT-210M (12 × 768, MLP 3072, gated), jina-embeddings-v5-text-nano's backbone
  code-0.5b    Qwen2-0.5B (24 × 896, 14/2 heads, MLP 4864), jina-code-embeddings-0.5b's backbone
  reranker-v3  Qwen3-0.6B (28 × 1024, 16/8 heads, MLP 3072) + projector, jina-reranker-v3 (listwise)
Embedding tables are the size of each checkpoint's tokenizer (a small one built here), not the published
vocabulary (250k / 128k / 152k rows): compute is unaffected, peak RSS is lower than the real model's by
that table (fp32: v3 0.9 GB, nano 0.4 GB, Qwen 0.5 GB).

Runtimes: torch fp32; torch bf16 (only where the CPU has native bf16); `--quantize int8` (ONNX Runtime);
llama.cpp GGUF Q8_0 and Q4_K_M (converted with llama.cpp's converter, then `llama_model_quantize`). Each
(model, runtime) runs in its own process (clean peak RSS): load, one warm-up, then the same texts (embedding:
4 texts of 128 tokens; reranker: one query and 4 documents of 120 tokens, one block) for at least 3 s and
2 passes; tokens/s from the tokenizer's own counts. Outputs are compared with torch fp32's (min cosine;
reranker: largest score difference).

reranker-v3 100 × 2,000: `benchmarks.rerank_memory memory --size real --block-tokens 8192` (the setting of the
1,024 s fp32 baseline in results/rerank_memory.md) on the fastest precision whose scores stay within 0.02 of fp32
with the same top-10 order at that setting; the precision check runs on a smaller list (12 documents × 500
characters), where fp32 finishes in bounded time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
MODELS = ["v3-size", "v5-nano", "code-0.5b", "reranker-v3"]
PRECISIONS = ["fp32", "bf16", "int8", "q8_0", "q4_k_m"]
# int8 (an ONNX export + quantisation at first load: minutes for a 0.5B model on 2 cores) where the int8 question is
# asked: the v3-size target and the small encoder; the decoders get llama.cpp's 8- and 4-bit GGUFs instead.
DEFAULT_PRECISIONS = {"v3-size": PRECISIONS, "v5-nano": PRECISIONS, "code-0.5b": ["fp32", "bf16", "q8_0", "q4_k_m"],
                      "reranker-v3": ["fp32", "bf16", "q8_0", "q4_k_m"]}
RERANK_BLOCK_TOKENS = 8192  # the 100×2k baseline's setting (1,024 s fp32 on a 2-core Zen 2; results/rerank_memory.md)

_BUILD = r"""
import json, shutil, sys
from pathlib import Path
import torch
sys.path[:0] = [str(Path(sys.argv[3]) / "tests"), str(Path(sys.argv[3]) / "tests" / "jina_text"),
                str(Path(sys.argv[3]) / "tests" / "rerankers")]
name, dst = sys.argv[1], Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

def st_files(pooling, dim):
    (dst / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (dst / "1_Pooling").mkdir(exist_ok=True)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim,
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_lasttoken": pooling == "last"}))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192}))

if name == "v3-size":
    from helpers import copy_bert_tokenizer
    from transformers import XLMRobertaConfig, XLMRobertaModel
    cfg = XLMRobertaConfig(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, max_position_embeddings=8194, type_vocab_size=1, pad_token_id=0)
    XLMRobertaModel(cfg, add_pooling_layer=False).save_pretrained(str(dst))
    copy_bert_tokenizer(dst)
    st_files("mean", 1024)
elif name == "v5-nano":
    import jt_builders
    from transformers import EuroBertConfig, EuroBertModel
    ids = jt_builders.build_bpe_tokenizer(dst, append_eos=True, bos=True)
    cfg = EuroBertConfig(vocab_size=ids["vocab_size"], hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=8192, pad_token_id=ids["<|end_of_text|>"],
                         bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|end_of_text|>"],
                         mask_token_id=ids["<|mask|>"], classifier_pooling="mean")  # (llama.cpp: cls | mean)
    EuroBertModel(cfg).save_pretrained(str(dst))
    st_files("mean", 768)
elif name == "code-0.5b":
    import jt_builders
    from transformers import Qwen2Config, Qwen2Model
    ids = jt_builders.build_bpe_tokenizer(dst, append_eos=False)
    cfg = Qwen2Config(vocab_size=ids["vocab_size"], hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                      eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True)
    Qwen2Model(cfg).save_pretrained(str(dst))
    st_files("last", 896)
elif name == "reranker-v3":
    import rr_builders
    over = {k: v for k, v in rr_builders.QWEN3_0_6B.items() if k != "vocab_size"}
    rr_builders.build_tiny_v3(dst, config_overrides=over)
"""


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (llama.cpp's and ONNX Runtime's native threads included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build(name: str, folder: Path) -> None:
    if (folder / "config.json").is_file():
        return
    subprocess.run([sys.executable, "-c", _BUILD, name, str(folder), str(ROOT)], check=True, cwd=str(ROOT),
                   env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))


def gguf_folder(name: str, src: Path, work: Path, qtype: str) -> Path:
    """A folder with the model's GGUF (`qtype`) + its tokenizer (+ the reranker's projector)."""
    import shutil

    from jinaserve.runtimes.gguf_convert import ConvertJob, convert, quantize

    folder = work / f"{name}-gguf"
    target = folder / f"{name}-{qtype.upper()}.gguf"
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    conv_src = src
    if name == "reranker-v3":  # what the published GGUF holds: the Qwen3 backbone; the projector beside it
        from safetensors.torch import load_file, save_file

        conv_src = work / f"{name}-convert"
        if not (conv_src / "config.json").is_file():
            conv_src.mkdir(parents=True, exist_ok=True)
            state = load_file(str(src / "model.safetensors"))
            save_file({k: v for k, v in state.items() if not k.startswith("projector.")},
                      str(conv_src / "model.safetensors"), metadata={"format": "pt"})
            save_file({k: v for k, v in state.items() if k.startswith("projector.")},
                      str(folder / "projector.safetensors"))
            cfg = json.loads((src / "config.json").read_text())
            cfg["architectures"] = ["Qwen3ForCausalLM"]
            cfg.pop("auto_map", None)
            (conv_src / "config.json").write_text(json.dumps(cfg))
            for f in src.iterdir():
                if f.name.startswith(("tokenizer", "special_tokens", "added_tokens", "vocab", "merges")):
                    shutil.copy(f, conv_src / f.name)
    for f in src.iterdir():  # tokenizer + sentence-transformers files (not the weights)
        if f.is_file() and f.suffix not in {".safetensors", ".bin"}:
            shutil.copy(f, folder / f.name)
        elif f.is_dir() and f.name == "1_Pooling":
            shutil.copytree(f, folder / f.name, dirs_exist_ok=True)
    if qtype == "q8_0":
        convert([ConvertJob(conv_src, target, "q8_0", generic_pretokenizer=True)], timeout_s=1800)
    else:
        f16 = folder / f"{name}-F16.tmp"
        convert([ConvertJob(conv_src, f16, "f16", generic_pretokenizer=True)], timeout_s=1800)
        quantize(f16, target, qtype)
        f16.unlink()
    return folder


def texts_for(tokenizer: Any, n: int, n_tokens: int, seed: int) -> list[str]:
    import random

    from .textgen import vocabulary

    vocab = vocabulary()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
            words.extend(rng.choice(vocab) for _ in range(16))
        ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
        out.append(tokenizer.decode(ids))
    return out


def worker(name: str, precision: str, folder: Path, threads: int, out: Path, cache: Path) -> None:
    """Load one (model, runtime) in this process, time it, write figures + outputs (npy)."""
    import numpy as np

    from jinaserve import Embedder, Reranker
    from jinaserve.jobs import RerankDocument, RerankJob

    opts: dict[str, Any] = {"device": "cpu", "threads": threads, "offline": True, "cache_dir": str(cache)}
    if precision in ("q8_0", "q4_k_m"):
        opts.update(runtime="llamacpp", quant=precision)
    elif precision == "int8":
        opts.update(dtype="float32", quantize="int8")
    else:
        opts["dtype"] = {"fp32": "float32", "bf16": "bfloat16"}[precision]
    t0 = time.perf_counter()
    rerank = name == "reranker-v3"
    model = (Reranker if rerank else Embedder)(f"{'jina-reranker-v3' if rerank else name}={folder}", **opts)
    load_s = time.perf_counter() - t0
    tok = model._service.family.tokenizer
    if rerank:
        docs = texts_for(tok, 4, 120, seed=5)
        query = "which passage talks about music in the park?"

        def call() -> Any:
            res = model.rerank(query, docs)
            return np.array([r["relevance_score"] for r in sorted(res, key=lambda r: r["index"])], dtype=np.float32)

        job = RerankJob("m", query, [RerankDocument(text=d) for d in docs])
        tokens = model._service.family.plan_rerank(job).total_tokens
    else:
        texts = texts_for(tok, 4, 128, seed=6)

        def call() -> Any:
            return model.encode(texts)

        tokens = sum(len(tok(t)["input_ids"]) for t in texts)
    result = call()  # warm-up
    passes, t0, c0 = 0, time.perf_counter(), _cpu_seconds()
    while passes < 2 or time.perf_counter() - t0 < 3.0:
        result = call()
        passes += 1
    seconds = (time.perf_counter() - t0) / passes
    cpu = (_cpu_seconds() - c0) / passes
    np.save(out.with_suffix(".npy"), result)
    backbone = model._service.family.backbone
    out.write_text(json.dumps({"model": name, "precision": precision, "runtime": backbone.runtime,
                               "tokens_per_pass": tokens, "seconds_per_pass": seconds, "tokens_s": tokens / seconds,
                               "tokens_per_cpu_s": tokens / cpu if cpu > 0 else None,
                               "load_s": load_s, "peak_rss_mib": vm_hwm_mib(), "passes": passes}))
    model.close()


def precision_check(folder: Path, threads: int, work: Path) -> dict[str, Any]:
    """fp32 vs bf16 on 12 documents × 500 characters (real-size reranker-v3): largest score difference and
    whether the top-10 order is the same."""
    import numpy as np

    out: dict[str, Any] = {}
    for prec in ("fp32", "bf16"):
        path = work / f"rr-check-{prec}.json"
        code = (f"import sys; sys.path[:0] = {[str(ROOT), str(TESTS), str(TESTS / 'rerankers')]!r}\n"
                "import json, random\nfrom rr_builders import random_text\nfrom jinaserve import Reranker\n"
                f"rng = random.Random(0); docs = [random_text(rng, 500) for _ in range(12)]\n"
                f"rr = Reranker('jina-reranker-v3={folder}', device='cpu', dtype="
                f"{'float32' if prec == 'fp32' else 'bfloat16'!r}, threads={threads}, offline=True, "
                f"rerank_block_tokens={RERANK_BLOCK_TOKENS})\n"
                "res = rr.rerank('which passage talks about music in the park?', docs)\n"
                "s = [r['relevance_score'] for r in sorted(res, key=lambda r: r['index'])]\n"
                f"open({str(path)!r}, 'w').write(json.dumps(s))\n")
        subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))
        out[prec] = np.array(json.loads(path.read_text()))
    diff = float(np.abs(out["fp32"] - out["bf16"]).max())
    same = list(np.argsort(-out["fp32"])[:10]) == list(np.argsort(-out["bf16"])[:10])
    return {"max_score_diff": diff, "top10_same_order": bool(same), "docs": 12, "chars": 500}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--precisions", default=None, help="default: per model (DEFAULT_PRECISIONS)")
    ap.add_argument("--no-rerank-100", action="store_true", help="skip reranker-v3 100 × 2,000 characters")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=os.environ.get("JINASERVE_BENCH_WORK"),
                    help="keep checkpoints, GGUFs and int8 graphs here for later runs (default: $JINASERVE_BENCH_WORK, "
                    "else a temporary folder)")
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "PRECISION", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.worker:
        worker(args.worker[0], args.worker[1], Path(args.worker[2]), args.threads, args.out, args.cache)
        return
    import numpy as np

    from jinaserve.runtimes.cpu import native_bf16

    from .machine import machine_info

    m = machine_info(args.threads)
    models = [x for x in args.models.split(",") if x]
    def precisions_of(name: str) -> list[str]:
        chosen = args.precisions.split(",") if args.precisions else DEFAULT_PRECISIONS[name]
        return [p for p in chosen if p and (p != "bf16" or native_bf16())]

    tmp = tempfile.TemporaryDirectory(prefix="jinaserve-real-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    for name in models:
        src = work / name
        t0 = time.perf_counter()
        build(name, src)
        print(f"[real] built {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        ref = None
        for prec in precisions_of(name):
            try:
                folder = gguf_folder(name, src, work, prec) if prec in ("q8_0", "q4_k_m") else src
                out = work / f"{name}-{prec}.json"
                subprocess.run([sys.executable, "-m", "benchmarks.real_size", "--worker", name, prec, str(folder),
                                "--out", str(out), "--cache", str(work / "cache"), "--threads", str(args.threads)],
                               check=True, cwd=str(ROOT), env=env, timeout=1800, capture_output=True)
                row = json.loads(out.read_text())
                got = np.load(out.with_suffix(".npy"))
                if prec == "fp32":
                    ref = got
                if ref is not None and name == "reranker-v3":
                    row["vs_fp32"] = f"max Δscore {float(np.abs(got - ref).max()):.4f}"
                elif ref is not None:
                    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
                    row["vs_fp32"] = f"min cos {float(cos.min()):.4f}"
                rows.append(row)
                print(f"[real] {name:12s} {prec:7s} {row['tokens_s']:9.1f} tok/s  RSS {row['peak_rss_mib']:6.0f} MiB",
                      file=sys.stderr, flush=True)
            except Exception as exc:
                err = exc.stderr.decode(errors="replace")[-400:] if isinstance(exc, subprocess.CalledProcessError) \
                    and exc.stderr else str(exc)[-400:]
                notes.append(f"{name} {prec}: failed: {err.strip().splitlines()[-1] if err.strip() else exc}")
                print(f"[real] {name} {prec} FAILED: {err}", file=sys.stderr, flush=True)
    rerank100: dict[str, Any] | None = None
    if "reranker-v3" in models and not args.no_rerank_100:
        # the published vocabulary (151,936 rows) here: this row's peak RSS is the real model's
        rr_src = work / "reranker-v3-full"
        if not (rr_src / "config.json").is_file():
            subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            f"sys.path[:0] = {[str(TESTS), str(TESTS / 'rerankers')]!r}; import rr_builders; "
                            f"rr_builders.build_tiny_v3(Path({str(rr_src)!r}), "
                            "config_overrides=rr_builders.QWEN3_0_6B)"], check=True, cwd=str(ROOT))
        fast = "bfloat16" if native_bf16() else "float32"
        check = precision_check(rr_src, args.threads, work) if fast == "bfloat16" else None
        if check is not None and not (check["max_score_diff"] <= 0.02 and check["top10_same_order"]):
            fast = "float32"
        proc = subprocess.run([sys.executable, "-m", "benchmarks.rerank_memory", "memory", "--size", "real",
                               "--threads", str(args.threads), "--folder", str(rr_src), "--dtype", fast,
                               "--block-tokens", str(RERANK_BLOCK_TOKENS)],
                              cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode == 0:
            rerank100 = json.loads(proc.stdout[proc.stdout.index("{"):])
            rerank100["dtype"] = fast
            rerank100["precision_check"] = check
        else:
            notes.append(f"reranker-v3 100×2k failed: {proc.stderr[-400:]}")
    total = time.perf_counter() - started
    md = render(rows, rerank100, notes, m, args, total)
    targets = []
    by = {(r["model"], r["precision"]): r for r in rows}
    if ("v3-size", "int8") in by and ("v3-size", "fp32") in by:
        v = by[("v3-size", "int8")]["tokens_s"] / by[("v3-size", "fp32")]["tokens_s"]
        targets.append({"target": "`--quantize int8` vs float32, v3-size (XLM-R large) in-process", "value": v,
                        "goal": 1.8, "unit": "×", "met": v >= 1.8, "key": "real", "lower_is_better": False,
                        "against": "torch fp32", "precision": "int8"})
    if rerank100:
        s, rss = rerank100["rerank_s"], rerank100["peak_rss_mib"]
        targets.append({"target": "reranker-v3 (Qwen3-0.6B) 100 docs × 2,000 chars, one request", "value": s,
                        "goal": 300, "unit": "s", "met": s <= 300 and rss <= 4096, "key": "real",
                        "lower_is_better": True, "against": f"peak RSS {rss} MiB (≤ 4096)",
                        "precision": rerank100["dtype"]})
    print(md)
    if args.json:
        args.json.write_text(json.dumps({"markdown": md, "rows": rows, "rerank_100x2k": rerank100, "notes": notes,
                                         "targets": targets, "machine": m}))
    tmp.cleanup()


def render(rows: list[dict], rerank100: dict | None, notes: list[str], m: dict, args: Any, total: float) -> str:
    lines = ["## Real-size models (random weights, published shapes)", "",
             f"`python -m benchmarks.real_size --threads {args.threads}` on {m['cpu']} (`{' '.join(m['key_flags'])}`), "
             f"load {m['loadavg_start']}, {total:.0f} s. In-process (`Embedder` / `Reranker`, same batcher), one "
             "process per row; embeddings: 4 texts × 128 tokens; reranker: 1 query + 4 documents × 120 tokens (one "
             "block). Peak RSS = the whole process (Python, torch, tokenizer, weights) with the small embedding "
             "tables described in `benchmarks/real_size.py`.", "",
             "`tokens/CPU-s` (tokens per second of the process's CPU time, all threads) moves less than wall-clock "
             "tokens/s when other processes share the cores; each row ran at a different moment.", "",
             "| model | runtime / precision | tokens/s | × torch fp32 | tokens/CPU-s | × torch fp32 | load s | "
             "peak RSS MiB | vs torch fp32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    base = {r["model"]: r for r in rows if r["precision"] == "fp32"}
    for r in rows:
        b = base.get(r["model"])
        x = f"{r['tokens_s'] / b['tokens_s']:.2f}×" if b else "—"
        cpu = r.get("tokens_per_cpu_s")
        xc = f"{cpu / b['tokens_per_cpu_s']:.2f}×" if b and cpu and b.get("tokens_per_cpu_s") else "—"
        lines.append(f"| {r['model']} | {r['runtime']} {r['precision']} | {r['tokens_s']:,.1f} | {x} | "
                     f"{(cpu or 0):,.1f} | {xc} | {r['load_s']:.1f} | {r['peak_rss_mib']:,.0f} | "
                     f"{r.get('vs_fp32', '—')} |")
    if rerank100:
        c = rerank100.get("precision_check")
        lines += ["", f"**jina-reranker-v3, 100 documents × 2,000 characters, one request** ({rerank100['dtype']}, "
                  f"{rerank100.get('blocks')} block(s), {rerank100.get('prompt_tokens')} prompt tokens): "
                  f"**{rerank100['rerank_s']} s** wall ({rerank100['rerank_cpu_s']} s CPU), peak RSS "
                  f"**{rerank100['peak_rss_mib']} MiB**, load {rerank100['load_s']} s. "
                  + (f"Precision check (12 documents × 500 characters, bf16 vs fp32): largest score difference "
                     f"{c['max_score_diff']:.4f} (limit 0.02), top-10 order "
                     f"{'the same' if c['top10_same_order'] else 'different'}."
                     if c else "")]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
