"""Run the HTTP server (uvicorn). SIGTERM/SIGINT: stop accepting, finish in-flight requests, drain the
batchers, exit 0."""

from __future__ import annotations

import uvicorn

from .api.app import create_app
from .config import Settings
from .logs import setup_logging


def serve(settings: Settings) -> None:
    setup_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            timeout_graceful_shutdown=int(settings.graceful_timeout_s), access_log=False,
                            lifespan="on")
    uvicorn.Server(config).run()
