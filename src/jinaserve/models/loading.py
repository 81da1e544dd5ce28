"""Options every family loader receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoadOptions:
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    runtime: str = "torch"
    quant: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    trust_remote_code: bool = False
