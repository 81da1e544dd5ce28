"""The models a process serves: loading (with status for /readyz), look-up by request name, shutdown."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .. import metrics
from ..catalog import lookup
from ..catalog.licences import licence_notice
from ..config import DEFAULT_MODELS, OFFLINE_FALLBACK_MODEL, Settings
from ..errors import ModelLoadError, ModelNotFoundError, ModelNotReadyError
from ..images import ImageFetchPolicy
from ..models import family_class
from ..models.loading import LoadOptions
from ..models.resolve import ModelRef, locate, resolve, split_alias
from ..runtimes import hub
from .cache import build_cache
from .service import ModelService

log = logging.getLogger("jinaserve.registry")

State = Literal["loading", "ready", "failed"]


@dataclass
class ModelStatus:
    name: str
    state: State = "loading"
    error: str | None = None  # the full message, for the server log
    reason: str | None = None  # what clients may see: short, no local paths
    kind: str | None = None
    load_seconds: float | None = None
    served_id: str | None = None
    extra: dict = field(default_factory=dict)


def load_options(settings: Settings) -> LoadOptions:
    return LoadOptions(device=settings.device, dtype=settings.dtype, threads=settings.threads,
                       runtime=settings.runtime, quant=settings.quant, offline=settings.offline,
                       quantize=None if settings.quantize == "none" else settings.quantize,
                       gguf_ctx_size=settings.gguf_ctx_size, gguf_batch_size=settings.gguf_batch_size,
                       cache_dir=settings.cache_dir, quiet=settings.quiet, trust_remote_code=settings.trust_remote_code,
                       image_policy=ImageFetchPolicy.from_settings(settings),
                       rerank_block_tokens=settings.rerank_block_tokens)


def uses_llamacpp(ref: ModelRef, runtime: str) -> bool:
    """`--runtime llamacpp`, a local GGUF file / folder of GGUF files, or a row published only as GGUF."""
    if runtime == "llamacpp":
        return True
    if ref.local_path is not None:
        p = ref.local_path
        gguf_folder = p.is_dir() and not (p / "config.json").is_file() and any(p.glob("*.gguf"))
        return p.suffix.lower() == ".gguf" or not ref.spec.family or gguf_folder
    return ref.spec.hf_repo is None and ref.spec.gguf is not None


def load_service(arg: str, settings: Settings) -> ModelService:
    """Resolve, fetch and load one model; returns its running service."""
    opts = load_options(settings)
    ref: ModelRef = resolve(arg)
    if uses_llamacpp(ref, opts.runtime):
        if opts.quantize:
            raise ModelLoadError(f"--quantize {opts.quantize} is for the torch runtime; a GGUF file carries its own "
                                 f"quantisation (choose it with --quant, e.g. Q8_0)")
        from ..models.gguf import load_gguf_family

        family = load_gguf_family(ref.spec, ref.local_path, opts)
    else:
        ref, folder = locate(ref, opts)
        cls = family_class(ref.spec.family)
        family = cls.load(ref.spec, folder, opts)
        if opts.quantize == "int8":
            try:
                family.quantize_int8(folder, opts)
            except Exception:
                family.close()
                raise
    cache = build_cache(ref.served_id, settings) if family.spec.kind == "embedding" else None
    service = ModelService(ref.served_id, family, max_batch_tokens=settings.max_batch_tokens,
                           max_batch_size=settings.max_batch_size, max_queue_items=settings.max_queue_items,
                           max_queue_tokens=settings.max_queue_tokens, max_queue_wait_s=settings.max_queue_wait_s,
                           max_queue_image_bytes=settings.max_queue_image_mb * 2**20, cache=cache)
    service.admission.calibrate(family)  # a first throughput estimate for admission (engine/admission.py)
    return service


def default_model_args(settings: Settings) -> list[str]:
    """The models to serve when none were named: the Jina defaults, or the bundled fallback when the
    hub cannot be reached and the defaults are not cached."""
    if settings.models:
        return list(settings.models)
    return defaults_or_fallback(DEFAULT_MODELS, settings, how_to_choose="name models with --models to choose")


def defaults_or_fallback(defaults: list[str], settings: Settings, *, how_to_choose: str) -> list[str]:
    """`defaults` when they are cached or a hub answers; otherwise (one warning) the bundled fallback model.
    Only for models the user did not name: a named model is never replaced."""
    rows = [lookup(m) for m in defaults]
    cached = all(r is not None and r.hf_repo and hub.is_cached(r.hf_repo, settings.cache_dir) for r in rows)
    if cached:
        return list(defaults)
    if not hub.offline_mode(settings.offline) and hub.hub_reachable():
        return list(defaults)
    log.warning("no model hub reachable and %s not cached: serving the bundled %s instead (%s)",
                " + ".join(defaults), OFFLINE_FALLBACK_MODEL, how_to_choose)
    fallback = lookup(OFFLINE_FALLBACK_MODEL)
    bundled = hub.bundled_folder(fallback.bundled_path) if fallback and fallback.bundled_path else None
    # The bundled folder itself: the hub just proved unreachable, so no second attempt (which can hang on
    # a network that drops packets) before the fallback to the bundled copy.
    return [f"{OFFLINE_FALLBACK_MODEL}={bundled}" if bundled else OFFLINE_FALLBACK_MODEL]


_PATH = re.compile(r"(?<![\w:/.>\\])(?:~|\.\.?|[A-Za-z]:)?[/\\][^\s'\"(),;:]+")


def public_name(arg: str) -> str:
    """How /readyz names a model the user gave as `arg`: NAME of NAME=SOURCE, a catalog id or hub repo as
    given, and only the last component of a local path (the server's folders are nobody's business)."""
    name, target = split_alias(arg)
    if name:
        return name
    if _PATH.match(target) or target.lower().endswith(".gguf"):
        return re.split(r"[/\\]", target.rstrip("/\\"))[-1] or "model"
    return target


def public_reason(exc: BaseException, arg: str) -> str:
    """A failed load's reason for clients: the first line of the message, local paths replaced by <path>."""
    text = _PATH.sub("<path>", (str(exc) or type(exc).__name__).strip().splitlines()[0])
    _, target = split_alias(arg)
    for path in {target, str(Path(target).expanduser()), str(Path(target).expanduser().resolve())}:
        if len(path) > 1 and ("/" in path or "\\" in path):
            text = text.replace(path, "<path>")
    return text if len(text) <= 200 else text[:200] + "..."


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._services: dict[str, ModelService] = {}
        self._status: dict[str, ModelStatus] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def mark_loading(self, args: list[str]) -> None:
        with self._lock:
            for arg in args:
                # NAME of NAME=SOURCE: /readyz names a loading model as requests will
                name = arg.partition("=")[0].strip() if "=" in arg else None
                self._status.setdefault(arg, ModelStatus(arg, served_id=name))

    def load(self, args: list[str]) -> None:
        """Load each model; a failure is recorded (and logged) without stopping the others."""
        self.mark_loading(args)
        for arg in args:
            self._load_one(arg)

    def _load_one(self, arg: str) -> None:
        started = time.perf_counter()
        try:
            service = load_service(arg, self.settings)
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            log.error("model %s failed to load: %s", arg, message,
                      exc_info=not isinstance(exc, ModelNotFoundError | ModelLoadError))  # expected: no traceback
            with self._lock:
                # the name requests use (NAME of NAME=SOURCE), so /readyz and errors name it as clients do
                self._status[arg] = ModelStatus(arg, "failed", message, public_reason(exc, arg),
                                                served_id=arg.partition("=")[0].strip() if "=" in arg else None)
            return
        self.add(service, arg, time.perf_counter() - started)

    def add(self, service: ModelService, arg: str | None = None, load_seconds: float | None = None) -> None:
        with self._lock:
            self._services[service.id] = service
            key = arg or service.id
            self._status[key] = ModelStatus(key, "ready", kind=service.kind, load_seconds=load_seconds,
                                            served_id=service.id)
        metrics.MODEL_READY.labels(service.id).set(1)
        licence = service.spec.licence or "unknown"
        log.info("model %s ready (%s)%s; licence %s", service.id, service.kind,
                 f" in {load_seconds:.1f}s" if load_seconds is not None else "", licence)
        notice = licence_notice(service.id, licence)
        if notice:  # one clear line for licences that forbid commercial use
            log.warning("licence notice: %s", notice)

    # ------------------------------------------------------------------ look-up
    @property
    def services(self) -> dict[str, ModelService]:
        return dict(self._services)

    def status(self) -> list[ModelStatus]:
        with self._lock:
            return list(self._status.values())

    @property
    def ready(self) -> bool:
        st = self.status()
        return bool(st) and all(s.state == "ready" for s in st)

    def get(self, name: str | None, kind: str) -> ModelService:
        """The service for a request's `model` field (None = the first served model of `kind`)."""
        services = self._services
        if name is None:
            # Prefer a model of the asked kind; rerank falls back to an embedding model (cosine).
            for s in services.values():
                if s.kind == kind:
                    return s
            for s in services.values():
                if kind == "rerank" and s.kind == "embedding":
                    return s
            raise ModelNotFoundError(f"No {kind} model is being served")
        if name in services:
            return services[name]
        target = self.settings.model_aliases.get(name)
        if target and target in services:
            return services[target]
        row = lookup(name)
        if row is not None:
            for s in services.values():
                if (s.spec.hf_repo and row.hf_repo == s.spec.hf_repo) or s.id == row.id:
                    return s
        for st in self.status():
            if name in (st.name, st.served_id) or (row is not None and st.name == row.id):
                if st.state == "loading":
                    raise ModelNotReadyError(f"Model {name!r} is still loading")
                if st.state == "failed":
                    raise ModelNotReadyError(f"Model {name!r} failed to load: {st.reason}")
        served = ", ".join(sorted(services)) or "none"
        raise ModelNotFoundError(f"Model {name!r} is not served here. Served models: {served}")

    # ------------------------------------------------------------------ shutdown
    def close(self, drain: bool = True) -> None:
        for s in list(self._services.values()):
            s.close(drain=drain)
            metrics.MODEL_READY.labels(s.id).set(0)
        self._services.clear()
