"""Run the HTTP server (uvicorn, with the guarded connection layer of `jinaserve.connection`).
SIGTERM/SIGINT: stop accepting, answer what was already sent, finish in-flight requests, drain the
batchers, exit 0."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from .api.app import create_app
from .config import Settings
from .connection import protocol_class
from .logs import setup_logging
from .runtimes.threads import apply_thread_env


def apply_offline_env(settings: Settings) -> None:
    """Offline mode also switches the Hugging Face libraries offline (read when they are imported), so
    no library makes a hub call of its own (version checks, telemetry, file HEAD requests)."""
    if settings.offline:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            os.environ[var] = "1"


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (so the process dies by the signal,
    exit status -15). A clean drain is a success: handle the signals and return normally (exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration of a jinaserve server, with the guarded connection layer
    (`jinaserve.connection`: header timeout, connection cap, reset-free shutdown)."""
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                          timeout_graceful_shutdown=int(settings.graceful_timeout_s), access_log=False,
                          lifespan="on", http=protocol_class(settings.header_timeout_s, settings.max_connections))


def serve(settings: Settings) -> None:
    apply_offline_env(settings)
    apply_thread_env()  # before the models (and torch) load
    setup_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    _Server(uvicorn_config(app, settings)).run()
