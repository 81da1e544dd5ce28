"""What this CPU can do, from its feature flags (Linux /proc/cpuinfo; empty elsewhere)."""

from __future__ import annotations

# Native bf16 matmuls: AMX tiles (Sapphire Rapids and later) or AVX512-BF16 (Cooper Lake, Zen 4). Without
# them torch emulates bf16 with fp32 instructions plus conversions, several times slower than fp32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags (x86 `flags`, ARM `Features`) of the first processor listed."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The flag that gives this CPU native bf16 (`amx_bf16` preferred, then `avx512_bf16`), or None."""
    flags = cpu_flags() if flags is None else flags
    return next((f for f in reversed(NATIVE_BF16_FLAGS) if f in flags), None)


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU reports Intel AMX int8 tiles (Sapphire Rapids and later)."""
    return "amx_int8" in cpu_flags(cpuinfo)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The `model name` line (e.g. "Intel(R) Xeon(R) Processor"), or "" where there is none."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
