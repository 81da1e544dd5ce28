"""The FastAPI application: routes, error mapping, middleware, model loading and shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .. import __version__
from ..config import Settings
from ..engine.registry import ModelRegistry, default_model_args
from . import batch, errors
from .classify import router as classify_router
from .middleware import RequestContextMiddleware
from .protocols import cohere, ollama, tei
from .routes import router

log = logging.getLogger("jinaserve.app")


def create_app(settings: Settings, registry: ModelRegistry | None = None, *,
               load_in_background: bool = True) -> FastAPI:
    """Build the app. Without a registry, models from `settings` load when the app starts
    (in a background thread, so /healthz answers and /readyz reports progress meanwhile)."""
    own_registry = registry is None
    reg = registry or ModelRegistry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader: threading.Thread | None = None
        if own_registry:
            args = await asyncio.to_thread(default_model_args, settings)
            if load_in_background:
                reg.mark_loading(args)  # before the first request can ask /readyz
                loader = threading.Thread(target=reg.load, args=(args,), name="model-loader", daemon=True)
                loader.start()
            else:
                await asyncio.to_thread(reg.load, args)
        try:
            yield
        finally:
            app.state.shutting_down = True
            if loader is not None:
                loader.join(timeout=1)
            if own_registry:
                await asyncio.to_thread(reg.close, True)
            log.info("shutdown complete")

    app = FastAPI(title="jinaserve", version=__version__, lifespan=lifespan,
                  description="Self-hosted Jina AI embeddings and reranking, compatible with the Jina and "
                              "OpenAI APIs.")
    app.state.settings = settings
    app.state.registry = reg
    app.state.shutting_down = False
    errors.install(app)
    app.include_router(router)
    app.include_router(classify_router)
    app.include_router(batch.router)  # batch jobs (Jina + OpenAI Batch APIs), with its worker's lifespan
    app.include_router(cohere.router)
    app.include_router(ollama.router)
    app.include_router(tei.router)  # last: its `POST /` and `/tei/{model}` match broadly
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.otel:
        from ..tracing import setup_tracing

        setup_tracing(app, True)
    return app
