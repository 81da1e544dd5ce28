"""A model's own planning threads: tokenising long inputs and decoding images, off the event loop.

Each `ModelService` has its own small pool, so one model's slow or heavy requests (big images, very long
texts) queue only behind each other and never hold a thread another model needs; and no thread here ever
waits on the network (image URLs are downloaded before planning, on the image I/O loop). Only CPU contends.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def default_threads() -> int:
    return max(2, min(4, os.cpu_count() or 2))


class Planner:
    def __init__(self, name: str, threads: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads or default_threads(), thread_name_prefix=f"plan-{name}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a planning thread, with the caller's context (request id for logs)."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(ctx.run, fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
