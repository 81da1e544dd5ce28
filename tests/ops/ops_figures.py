"""Figures the ops tests measure (printed at the end of the run, written to build/ops-report.json)."""

from __future__ import annotations

from typing import Any

FIGURES: dict[str, Any] = {}


def record(name: str, **values: Any) -> None:
    FIGURES[name] = values


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def cpu_line() -> str:
    """CPU model and flag count, printed with every timing figure (timings on a shared box are noisy)."""
    import platform
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "?").strip()
    flags = fields.get("Flags", "").split()
    key = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}, {fields.get('CPU(s)', '?').strip()} CPUs, flags incl. {' '.join(key) or 'none of avx2/avx512'}"
