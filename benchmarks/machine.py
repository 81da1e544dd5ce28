"""The machine a benchmark ran on, and its matmul ceiling (the denominator of MFU).

`python -m benchmarks.machine [--threads N]` prints both as JSON. The ceiling is measured, not taken
from a datasheet: torch matmul of square matrices (1024 and 2048) with the same thread count the engines
get, best of several timed repetitions after a warm-up, per precision (float32, bfloat16); int8 through
ONNX Runtime's MatMulInteger path is not a torch matmul, so int8 rows are reported against the bf16 ceiling
(the fastest dense path of this CPU) and say so.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Any

KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
             "avx512_fp16")


def lscpu() -> dict[str, str]:
    out: dict[str, str] = {}
    exe = shutil.which("lscpu")
    if exe:
        for line in subprocess.run([exe], capture_output=True, text=True, check=False).stdout.splitlines():
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def machine_info(threads: int) -> dict[str, Any]:
    from jinaserve.runtimes.cpu import cpu_flags, cpu_model, native_bf16

    info = lscpu()
    flags = sorted(info.get("Flags", "").split()) or sorted(cpu_flags())
    import torch

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": info.get("Model name") or cpu_model() or platform.processor() or platform.machine(),
            "vendor": info.get("Vendor ID", ""), "cpu_family_model": f"{info.get('CPU family', '?')}/"
            f"{info.get('Model', '?')}", "hypervisor": info.get("Hypervisor vendor", ""),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "threads": threads, "key_flags": [f for f in KEY_FLAGS if f in flags], "flags": flags,
            "native_bf16": native_bf16(frozenset(flags)), "python": platform.python_version(),
            "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def matmul_ceiling(threads: int, dtypes: tuple[str, ...] = ("float32", "bfloat16"), seconds: float = 2.0) -> dict:
    """GFLOP/s of torch matmul per dtype (best over sizes and repetitions) with `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, Any] = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        best = 0.0
        for n in (1024, 2048):
            a = torch.randn(n, n).to(dtype)
            b = torch.randn(n, n).to(dtype)
            torch.matmul(a, b)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                torch.matmul(a, b)
                best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
        out[name] = round(best, 1)
    return out


def main() -> None:
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else \
        len(os.sched_getaffinity(0))
    print(json.dumps({"machine": machine_info(threads), "ceiling_gflops": matmul_ceiling(threads)}))


if __name__ == "__main__":
    main()
