"""`make bench-gpu`: real-size models on one CUDA GPU, jinaserve against Infinity on the same GPU (≤ 8 minutes).

    .venv/bin/python -m benchmarks.gpu [--seconds 10] [--dtypes bfloat16,float16] [--no-infinity] [--out DIR]

Refuses at once (exit 2, nothing started) where CUDA is not available. On a GPU:
  1. builds random-weight checkpoints at the published shapes (`benchmarks.real_size`): v3-size (XLM-R large,
     jina-embeddings-v3's per-token cost in merged-adapter mode), v5-nano (EuroBERT-210M), reranker-v3
     (Qwen3-0.6B + projector);
  2. per dtype (bf16, fp16): one jinaserve server (`--device cuda --dtype D`) serving the two embedding models;
     HTTP 8×32 base64 (8 clients × 32 texts of 128 / 512 tokens), the same load generator as `make bench`;
     tokens/s and MFU = achieved FLOP/s (`benchmarks.flops`) ÷ the GPU's datasheet dense peak for that dtype
     (`DATASHEET_TFLOPS`; an unknown GPU gets no MFU, never a guessed one);
  3. Infinity (`infinity-emb[server,torch]`, its own venv `benchmarks/.venvs/infinity-gpu` with PyPI's default
     CUDA torch) on the same models, dtypes and load;
  4. reranker-v3: one request of 100 documents × 2,000 characters, in-process, per dtype (time, CUDA peak memory).
Writes `benchmarks/results/gpu.md` + `gpu.json` (the docs link there). Each step is bounded (`--seconds` per
cell, start-up time-outs), so the whole run fits in 8 minutes on an A10-class GPU or better.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GPU_VENV = ROOT / "benchmarks" / ".venvs" / "infinity-gpu"
INFINITY_GPU_SPEC = os.environ.get("JINASERVE_BENCH_INFINITY_GPU_SPEC", "infinity-emb[server,torch]==0.0.78")

# Dense (no sparsity) tensor-core peak TFLOP/s from the vendors' datasheets, {dtype: TFLOP/s}; matched by name.
DATASHEET_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bfloat16": 989.0, "float16": 989.0},
    "H100 SXM": {"bfloat16": 989.0, "float16": 989.0},
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0},
    "H100 NVL": {"bfloat16": 835.0, "float16": 835.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0},
    "L40S": {"bfloat16": 362.0, "float16": 362.0},
    "L4": {"bfloat16": 121.0, "float16": 121.0},
    "A10G": {"bfloat16": 70.0, "float16": 70.0},
    "A10": {"bfloat16": 125.0, "float16": 125.0},
    "T4": {"float16": 65.0},
}


def datasheet_peak(gpu_name: str, dtype: str) -> float | None:
    """Datasheet dense peak (TFLOP/s) of `gpu_name` for `dtype`, longest matching key first; None if unknown."""
    name = gpu_name.upper().replace("NVIDIA", "").strip()
    for key in sorted(DATASHEET_TFLOPS, key=len, reverse=True):
        parts = key.upper().split()
        if all(p in name.split() or p in name for p in parts):
            if parts[0] == "A10" and "A100" in name:
                continue
            if parts[0] == "L4" and "L40" in name:
                continue
            return DATASHEET_TFLOPS[key].get(dtype)
    return None


def cuda_or_exit() -> str:
    """The GPU's name, or exit 2 with a clear message where CUDA is not available."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None  # type: ignore[assignment]
    if torch is None or not torch.cuda.is_available():
        version = getattr(torch, "__version__", "not installed")
        sys.stderr.write(f"make bench-gpu needs a CUDA GPU: torch {version} sees none on this machine "
                         f"(torch.cuda.is_available() is False). Nothing was started; GPU figures are not measured "
                         f"here. Run it on a machine with an NVIDIA GPU and a CUDA build of torch.\n")
        raise SystemExit(2)
    return torch.cuda.get_device_name(0)


def ensure_infinity_gpu(log: Path) -> Path:
    exe = GPU_VENV / "bin" / "infinity_emb"
    marker = GPU_VENV / ".installed"
    if exe.is_file() and marker.is_file() and marker.read_text().strip() == INFINITY_GPU_SPEC:
        return exe
    with log.open("ab") as out:
        for cmd in ([sys.executable, "-m", "venv", str(GPU_VENV)],
                    [str(GPU_VENV / "bin" / "python"), "-m", "pip", "install", "-q", INFINITY_GPU_SPEC]):
            if subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT) != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed; see {log}")
    marker.write_text(INFINITY_GPU_SPEC)
    return exe


def load_cell(server: Any, model: str, api: str, texts: list[str], seconds: float, tokens_per_input: float,
              tmp: Path) -> dict[str, Any]:
    from .loadgen import LoadSpec
    from .run_all import _run_json

    spec = LoadSpec(base_url=server.url, model=model, kind="embed", api=api, clients=8, inputs_per_request=32,
                    texts=texts, fmt="base64", duration_s=seconds, min_requests=10, max_duration_s=seconds * 3)
    res = _run_json("benchmarks.loadgen", spec.__dict__, tmp, timeout=seconds * 3 + 300)
    if not res.get("ok"):
        return {"ok": False, "error": "; ".join(res.get("errors") or [])[:300]}
    sps = res["inputs"] / res["wall_s"]
    return {"ok": True, "inputs_s": sps, "tokens_s": sps * tokens_per_input, "requests": res["requests"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of load per cell (at least 10 requests)")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--no-infinity", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    gpu = cuda_or_exit()
    from . import engines
    from .flops import config_of, flops_per_token
    from .real_size import build, texts_for

    started = time.perf_counter()
    dtypes = [d for d in args.dtypes.split(",") if d]
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jinaserve-gpu-") as tmpname:
        tmp = Path(tmpname)
        folders = {}
        for name in ("v3-size", "v5-nano", "reranker-v3"):
            folders[name] = tmp / name
            build(name, folders[name])
        from transformers import AutoTokenizer

        work = {}
        for name in ("v3-size", "v5-nano"):
            tok = AutoTokenizer.from_pretrained(str(folders[name]))
            for length in (128, 512):
                texts = texts_for(tok, 256, length, seed=length)
                work[(name, length)] = (texts, float(length + 2))
        for dtype in dtypes:
            models = [f"{n}={folders[n]}" for n in ("v3-size", "v5-nano")]
            srv = engines.jinaserve_server(f"gpu-jinaserve-{dtype}", models, threads=4, logs=logs,
                                           extra_args=["--dtype", dtype], device="cuda")
            engines_to_run: list[tuple[str, Any, str]] = [("jinaserve", srv, "jina")]
            if not args.no_infinity:
                try:
                    exe = ensure_infinity_gpu(logs / "infinity-gpu-install.log")
                    port = engines.free_port()
                    cmd = [str(exe), "v2"]
                    for n in ("v3-size", "v5-nano"):
                        cmd += ["--model-id", str(folders[n]), "--served-model-name", n, "--engine", "torch",
                                "--dtype", dtype, "--batch-size", "32", "--device", "cuda"]
                    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-vector-disk-cache"]
                    inf = engines.Server(f"gpu-infinity-{dtype}", cmd, engines.thread_env(4), port, "/health",
                                         logs / f"gpu-infinity-{dtype}.log", startup_timeout_s=300)
                    engines_to_run.append(("infinity", inf, "infinity"))
                except Exception as exc:
                    notes.append(f"Infinity not run ({dtype}): {exc}")
            for label, server, api in engines_to_run:
                try:
                    with server:
                        for (name, length), (texts, tpi) in work.items():
                            cell = load_cell(server, name, api, texts, args.seconds, tpi, tmp)
                            peak = datasheet_peak(gpu, dtype)
                            if cell.get("ok") and peak:
                                cell["mfu"] = cell["tokens_s"] * flops_per_token(config_of(folders[name]), tpi) / (
                                    peak * 1e12)
                            rows.append({"engine": label, "dtype": dtype, "model": name, "tokens": length, **cell})
                except Exception as exc:
                    notes.append(f"{label} {dtype} failed: {str(exc)[:300]}")
            # reranker-v3, 100 × 2,000 characters, in-process on the GPU
            proc = subprocess.run([sys.executable, "-m", "benchmarks.rerank_memory", "memory", "--size", "real",
                                   "--device", "cuda", "--dtype", dtype, "--folder", str(folders["reranker-v3"])],
                                  cwd=str(ROOT), capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                rr = json.loads(proc.stdout[proc.stdout.index("{"):])
                rows.append({"engine": "jinaserve", "dtype": dtype, "model": "reranker-v3 100×2k",
                             "rerank_s": rr["rerank_s"], "cuda_peak_mib": rr.get("cuda_peak_mib"), "ok": True})
            else:
                notes.append(f"reranker-v3 100×2k ({dtype}) failed: {proc.stderr[-300:]}")
    total = time.perf_counter() - started
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    peaks = ", ".join(f"{d} {datasheet_peak(gpu, d)} TFLOP/s" for d in dtypes)
    lines = ["# jinaserve on a GPU (`make bench-gpu`)", "",
             f"{gpu}, {when}, {total:.0f} s. HTTP 8×32 base64, {args.seconds} s per cell; MFU against the datasheet "
             f"dense peak ({peaks}).", "",
             "| model | tokens/input | dtype | engine | tokens/s | MFU | requests |",
             "|---|---:|---|---|---:|---:|---:|"]
    for r in rows:
        if "rerank_s" in r:
            continue
        if not r.get("ok"):
            lines.append(f"| {r['model']} | {r['tokens']} | {r['dtype']} | {r['engine']} | failed: {r.get('error')} "
                         f"| | |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "—"
        lines.append(f"| {r['model']} | {r['tokens']} | {r['dtype']} | {r['engine']} | {r['tokens_s']:,.0f} | "
                     f"{mfu} | {r['requests']} |")
    for r in rows:
        if "rerank_s" in r:
            lines.append(f"\njina-reranker-v3 100 × 2,000 characters ({r['dtype']}): {r['rerank_s']} s, CUDA peak "
                         f"{r['cuda_peak_mib']} MiB.")
    lines += [f"- {n}" for n in notes]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    (args.out / "gpu.json").write_text(json.dumps({"gpu": gpu, "rows": rows, "notes": notes, "total_s": total}))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
