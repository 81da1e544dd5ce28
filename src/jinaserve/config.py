"""Settings: the single place configuration comes from.

Precedence: CLI flags > `JINASERVE_*` environment variables > TOML config file (`--config` or
`JINASERVE_CONFIG`) > defaults. List settings accept comma-separated strings in the environment
(`JINASERVE_MODELS=a,b`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_MODELS = ["jina-embeddings-v3", "jina-reranker-v3"]
OFFLINE_FALLBACK_MODEL = "all-MiniLM-L6-v2"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JINASERVE_", extra="ignore", populate_by_name=True,
                                      env_ignore_empty=True)  # `JINASERVE_QUANT=` in an .env file = unset

    # --- what to serve --------------------------------------------------------------------
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models to serve: catalog ids, Hugging Face repo ids, local folders, or NAME=SOURCE. "
        "Empty = the defaults (jina-embeddings-v3, jina-reranker-v3), or the bundled all-MiniLM-L6-v2 "
        "when the hub is unreachable and they are not cached.",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request names for served models, e.g. {'jina-reranker-v2-base-multilingual': "
        "'my-reranker'} for clients that hard-code a model name.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="Where models run; auto = cuda if available, else mps, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="Weight/compute dtype. auto: on CPU bfloat16 only when the CPU has native bf16 "
        "(avx512_bf16 / amx_bf16) and a load-time probe shows it faster with hidden states within cosine 0.999 of "
        "float32, else float32 (the choice is logged); on GPU a half type; models that need fp32 keep it.")
    quantize: Literal["none", "int8"] = Field(
        default="none", description="int8: run the backbone as an ONNX Runtime dynamic-int8 graph (CPU; built once "
        "from the float32 weights and cached; FFN down-projections stay float). Needs the int8 extra. Families "
        "whose task adapters patch the weights (jina-embeddings-v3/v4, v5 with adapters) refuse it.")
    runtime: Literal["torch", "llamacpp"] = Field(
        default="torch", description="torch (transformers) or llamacpp (GGUF files through llama-cpp-python).")
    quant: str | None = Field(default=None, description="GGUF quantisation to load (llamacpp runtime).")
    gguf_ctx_size: int | None = Field(default=None, description="llamacpp runtime: context size in tokens "
                                      "(default: min(the model's trained context, 8192)); caps max tokens.")
    gguf_batch_size: int | None = Field(default=None, description="llamacpp runtime: tokens per llama.cpp "
                                        "decode call (default: the context size).")
    threads: int | None = Field(default=None, description="CPU threads for inference (default: all cores).")
    offline: bool = Field(default=False, description="Never contact a model hub; use local/cached files.")
    cache_dir: str | None = Field(default=None, description="Model cache folder (default: HF cache).")
    quiet: bool = Field(default=False, description="No download progress bars (they are shown only when stderr is a "
                        "terminal); the one line naming each download's model, size and licence is still logged.")
    bundle: str | None = Field(default=None, description="Serve an offline bundle made by `jinaserve bundle` "
                               "(its manifest names the models; implies offline).")
    trust_remote_code: bool = Field(default=False, description="Passed to the loaders; no family runs remote code "
                                    "(every model runs on native classes), so it currently changes nothing.")

    # --- server ---------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 to listen on every interface).")
    port: int = Field(default=8080, description="HTTP port.")
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Accepted API keys.")
    log_format: Literal["json", "console"] = Field(default="console", description="One JSON object per log line, "
                                                   "or readable console lines.")
    log_level: str = Field(default="info", description="debug | info | warning | error.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (empty = no CORS headers).")
    graceful_timeout_s: float = Field(default=30.0, description="On SIGTERM, how long in-flight requests may "
                                      "take to finish before the server exits.")
    data_dir: str | None = Field(
        default=None, description="Folder of the embedded store (SQLite database + files) for state that survives "
        "a restart: batch jobs, trained classifiers. Default: the user's data folder (~/.local/share/jinaserve).")
    # --- batch jobs (docs/batch.md) --------------------------------------------------------
    batch_completion_window_s: float = Field(
        default=86400.0, description="Batch jobs: a job not finished this many seconds after it was created "
        "becomes `expired` (the hosted APIs' 24 h window). An OpenAI batch's `completion_window` ('24h', "
        "'1h', ...) sets its own, capped by this.")
    batch_retention_s: float = Field(
        default=86400.0, description="Batch jobs: how long a finished job, its output and error files are "
        "kept before cleanup deletes them (hosted: output expires after 24 h).")
    batch_max_lines: int = Field(
        default=50000, description="Batch jobs: most lines in one job's input (input_url, uploaded file; "
        "the hosted limit is 50,000). Inline `input` is limited to 10,000 items as on the hosted API.")
    batch_max_input_bytes: int = Field(
        default=200 * 1024 * 1024, description="Batch jobs: largest input_url download (bytes). Uploads to "
        "/v1/files are limited by max_body_bytes.")
    batch_allow_private_urls: bool = Field(
        default=False, description="Batch jobs: allow input_url and webhook_url to resolve to private, "
        "loopback, link-local or reserved addresses (SSRF guard off). Only for trusted networks.")
    batch_allow_object_store: bool = Field(
        default=False, description="Batch jobs: allow s3:// and gs:// input_url, read with the server's own cloud "
        "credentials (needs the s3 or gcs extra). Off by default: any caller who may create a job could read every "
        "object those credentials can.")
    otel: bool = Field(default=False, description="OpenTelemetry tracing of HTTP requests (needs the otel extra).")

    # --- limits ---------------------------------------------------------------------------
    max_body_bytes: int = Field(default=32 * 1024 * 1024, description="Largest request body (413 above it).")
    max_inputs_per_request: int = Field(default=2048, description="Most `input` items per embeddings request (422).")
    max_documents_per_request: int = Field(default=4096, description="Most documents per rerank request (422).")
    max_input_chars: int = Field(default=1_000_000, description="Longest text input / document in characters "
                                 "(422); the token limit is the model's own (400 with truncate=false).")
    allow_token_ids: bool = Field(
        default=False, description="Accept token-id arrays as `input` (ids in the served model's own vocabulary). "
        "Off: they get a 422, as on the hosted API, because clients such as langchain-openai send ids of another "
        "tokenizer (tiktoken) that would give wrong vectors.")

    # --- connections (the HTTP layer: jinaserve.connection) ---------------------------------
    header_timeout_s: float = Field(
        default=10.0, description="A connection must deliver a request's complete headers within this many seconds "
        "of opening (or of the request's first byte); otherwise it is closed (a 408 JSON answer if it had sent "
        "part of a request). Stops slowloris clients.")
    max_connections: int = Field(
        default=1024, description="Open client connections served at once; a request on a connection beyond it gets "
        "a 503 JSON answer (Retry-After) and the connection is closed.")

    # --- classification (/v1/classify, /v1/train; see docs/classify.md) ---------------------
    classify_label_cache_mb: float = Field(
        default=64.0, ge=0, description="Memory for cached label embeddings of zero-shot /v1/classify, per "
        "(model, task, label), least recently used dropped first; 0 = no cache.")
    max_classifiers: int = Field(
        default=1000, ge=1, description="Most trained classifiers (/v1/train) each API key (or, without keys, "
        "the server) may keep in the store; beyond it /v1/train answers 403 until one is deleted.")

    # --- image inputs (multimodal models; see jinaserve.images) -----------------------------
    image_max_bytes: int = Field(default=8 * 1024 * 1024, description="Largest accepted image (bytes).")
    image_connect_timeout_s: float = Field(default=5.0, description="Image URL download: connect timeout.")
    image_read_timeout_s: float = Field(default=10.0, description="Image URL download: read timeout.")
    image_fetch_timeout_s: float = Field(default=20.0, description="Deadline for all of one request's image URL "
                                         "downloads, waiting for a download slot included.")
    image_max_redirects: int = Field(default=3, description="Image URL download: most redirects followed.")
    image_allow_private_urls: bool = Field(
        default=False, description="Allow image URLs that resolve to private, loopback, link-local or reserved "
        "addresses (SSRF guard off). Only for trusted networks.")
    image_max_pixels: int = Field(default=64_000_000, description="Largest image in pixels (width x height, read "
                                  "from the header before decoding; 413 above it).")
    image_max_request_pixels: int = Field(
        default=256_000_000, description="Decoded pixels of all of one request's images together (after the "
        "JPEG draft downscale), checked from the headers before any is decoded (413 above it).")
    image_max_request_bytes: int = Field(
        default=64 * 1024 * 1024, description="Encoded bytes of all of one request's images together, downloaded "
        "or inline (413 above it).")
    image_decode_memory_mb: int = Field(
        default=1024, description="Server-wide budget for decoded image buffers alive at once (MiB). An image "
        "waits for room (429 after 30 s); one that alone needs more gets a 413.")
    image_max_concurrent_fetches: int = Field(default=8, description="Image URL downloads running at once (whole "
                                              "server).")
    image_max_fetches_per_host: int = Field(default=4, description="Image URL downloads running at once from one "
                                            "host, so a slow host cannot take every download slot.")

    # --- batching -------------------------------------------------------------------------
    max_batch_tokens: int = Field(default=16384, description="Token budget of one forward pass (longest item × "
                                  "batch size, i.e. padded tokens).")
    max_batch_size: int = Field(default=128, description="Most items in one forward pass.")
    max_queue_items: int = Field(default=8192, description="Items (inputs / documents) queued or running per model; "
                                 "a request that would pass it gets 429 + Retry-After, one that alone has more gets "
                                 "413.")
    max_queue_tokens: int = Field(default=4_194_304, description="Tokens queued or running per model; a request that "
                                  "would pass it gets 429 + Retry-After, one that alone has more gets 413.")
    max_queue_image_mb: int = Field(
        default=2048, description="Processed image tensors (pixels ready for the model) queued or running per model, "
        "in MiB; a request that would pass it gets 429 + Retry-After, one that alone has more gets 413.")
    max_queue_wait_s: float = Field(
        default=30.0, description="Longest estimated wait for an answer (tokens queued or running, plus the larger "
        "of the request's own and a recent batch, / the model's measured tokens per second) for a request to be "
        "admitted; above it, 429 with Retry-After from the estimate. A request on an idle model is always admitted. "
        "0 turns it off.")
    cache_size: int = Field(
        default=0, ge=0, description="Exact-match embedding cache: most (model, task, truncate, text) → vector "
        "entries kept in memory per model (LRU); hits skip the queue. 0 = off.")
    cache_persist: bool = Field(
        default=False, description="Also keep the embedding cache in the embedded store (data_dir's SQLite, at "
        "most 10 × cache_size rows), so it survives restarts. Needs cache_size > 0.")
    rerank_block_tokens: int | None = Field(
        default=None, description="Listwise rerankers (jina-reranker-v3): most tokens in one block (one forward "
        "pass). Default: the model's context (131072), as the reference implementation. Lower it to bound "
        "per-block latency on CPU; fewer documents then share one pass.")

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _bundle(self) -> Settings:
        if self.bundle:
            from .bundle import apply_bundle

            apply_bundle(self)
        return self

    @field_validator("api_keys", mode="after")
    @classmethod
    def _strip_keys(cls, value: list[str]) -> list[str]:
        return [k for k in value if k]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = _CONFIG_FILE.get("path") or os.environ.get("JINASERVE_CONFIG")
        if config_path:
            path = Path(config_path)
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {path}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


_CONFIG_FILE: dict[str, str | None] = {"path": None}


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings with CLI `overrides` (None values are dropped so lower layers show through)."""
    _CONFIG_FILE["path"] = str(config_file) if config_file else None
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE["path"] = None
