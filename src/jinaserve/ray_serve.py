"""Scale-out on Ray Serve: the same FastAPI app and engine in N replicas behind Ray's HTTP proxy.

    jinaserve serve --ray --replicas 2 --models jina-embeddings-v3
    jinaserve serve --ray --min-replicas 1 --max-replicas 4 --target-ongoing-requests 8
    python -m jinaserve.ray --replicas 2 --models ...              (same options)

Each replica is a Ray actor that builds the ordinary jinaserve app (`create_app`) with its own model
registry and dynamic batcher; Ray's proxy (on `--host`/`--port`) spreads requests over the replicas.
A replica is healthy only while all its models are loaded (`check_health`), so Ray routes no traffic
to a replica that is still loading and replaces one whose process died. Every response carries
`x-jinaserve-replica` (the replica's process id) so operators can see the spread.

Requires the `ray` extra: `pip install 'jinaserve[ray]'`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from .config import Settings

log = logging.getLogger("jinaserve.ray")

APP_NAME = "jinaserve"
DEPLOYMENT_NAME = "JinaServe"


@dataclass
class RayOptions:
    replicas: int = 1
    min_replicas: int | None = None  # set min/max to autoscale instead of a fixed count
    max_replicas: int | None = None
    target_ongoing_requests: float = 8.0
    max_ongoing_requests: int = 64
    address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); None = start local
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    health_check_period_s: float = 2.0
    health_check_timeout_s: float = 10.0
    graceful_shutdown_timeout_s: float = 30.0

    def deployment_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.min_replicas is not None or self.max_replicas is not None:
            lo = self.min_replicas if self.min_replicas is not None else 1
            hi = self.max_replicas if self.max_replicas is not None else max(lo, self.replicas)
            if not 0 <= lo <= hi or hi < 1:
                raise ValueError(f"need 0 <= min_replicas <= max_replicas and max >= 1, got {lo}..{hi}")
            opts["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi,
                                          "initial_replicas": max(lo, min(self.replicas, hi)),
                                          "target_ongoing_requests": self.target_ongoing_requests}
        else:
            if self.replicas < 1:
                raise ValueError("replicas must be >= 1")
            opts["num_replicas"] = self.replicas
        return opts


class _ReplicaHeader:
    """ASGI wrapper adding `x-jinaserve-replica: <pid>` to every response. Ray's proxy sets
    `x-request-id` itself (from the client's header, or one it makes and hands to the replica, which
    jinaserve then uses too), so the app's copy is dropped rather than sent twice."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._value = str(os.getpid()).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-jinaserve-replica", self._value)]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def build_deployment(settings: Settings, options: RayOptions) -> Any:
    """The bound Ray Serve application (one deployment of `options` replicas)."""
    from ray import serve

    settings_data = settings.model_dump()

    @serve.ingress()
    class JinaServe:
        def __init__(self, settings_data: dict[str, Any]) -> None:
            from .api.app import create_app
            from .logs import setup_logging
            from .server import apply_offline_env

            self.settings = Settings.model_validate(settings_data)
            apply_offline_env(self.settings)
            setup_logging(self.settings.log_format, self.settings.log_level)
            # Models load in the app's lifespan (not in the background): the replica reports ready to Ray
            # only once they are loaded, so the proxy never routes to a half-started replica.
            self.fastapi_app = create_app(self.settings, load_in_background=False)

        def __serve_build_asgi_app__(self) -> Any:
            return _ReplicaHeader(self.fastapi_app)

        def check_health(self) -> None:
            registry = self.fastapi_app.state.registry
            failed = [s.name for s in registry.status() if s.state == "failed"]
            if failed:
                raise RuntimeError(f"models failed to load: {', '.join(failed)}")
            for service in registry.services.values():
                thread = service.batcher._thread
                if thread is not None and not thread.is_alive():
                    raise RuntimeError(f"batcher of {service.id} stopped")

    return serve.deployment(JinaServe, **options.deployment_options()).bind(settings_data)


def start(settings: Settings, options: RayOptions, *, blocking: bool = False) -> Any:
    """Connect to (or start) Ray, start Serve's HTTP proxy on settings.host:port and deploy."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if options.address:
            init_kwargs["address"] = options.address
        ray.init(**init_kwargs)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = build_deployment(settings, options)
    return serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)


def shutdown() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        if ray.is_initialized():
            ray.shutdown()


def run_ray(settings: Settings, options: RayOptions) -> None:
    """Foreground: deploy, log where it listens, block until SIGINT/SIGTERM, then shut Serve down."""
    from .logs import setup_logging

    setup_logging(settings.log_format, settings.log_level)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    start(settings, options)
    # Ray's core worker installs its own fatal-signal handler for SIGTERM (stack dump + abort) in
    # ray.init: take SIGTERM/SIGINT back so they mean "shut down cleanly, exit 0".
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log.info("Ray Serve app %r on http://%s:%d (%s)", APP_NAME, settings.host, settings.port,
             options.deployment_options().get("autoscaling_config") or f"{options.replicas} replicas")
    try:
        while not stop.is_set():
            time.sleep(0.5)
    finally:
        log.info("shutting down Ray Serve")
        shutdown()
