"""The `llamacpp` runtime: GGUF files executed by llama.cpp (through llama-cpp-python).

Only the network execution differs from the torch path. `LlamaCppBackbone` is the runtime interface of
`runtimes.backbone`: `encode(input_ids, attention_mask)` returns llama.cpp's per-token hidden states
(context created with `embeddings=True` and pooling NONE), padded back to the batch layout; capabilities
`adapters` (LoRA GGUFs switched per batch) and `unpadded`. Which family wraps it, and how (prompts, task →
adapter, pooling, Dense layers, the jina-reranker-v3 projector), is decided in `models/gguf.py` and the
families' `load_gguf`: this module knows no family.

Where files come from (`locate_gguf`):
* a local `.gguf` file (`--models NAME=/path/model-Q8_0.gguf`), or a folder holding `.gguf` files
  (`--quant` picks one when there are several); extra files (projector.safetensors, tokenizer.json)
  are read from the same folder;
* a catalog row's `GGUFSpec`: `--quant Q8_0` (default: the row's `default_quant`) selects one file of
  the row's GGUF repo; only that file and the row's `extra_files` are downloaded.

jina-embeddings-v3 (no published GGUF: converted locally) = the base GGUF + llama.cpp LoRA adapters
`lora-<task>-<file>` next to it, switched per batch; the token-type LoRA llama.cpp ignores is folded into
the word-embedding LoRA first (`gguf_lora`).

Tokenisation: the Hugging Face tokenizer when the GGUF's folder has one (tokenizer.json /
tokenizer_config.json), else the vocabulary inside the GGUF itself through llama.cpp
(`GGUFTokenizer`), so one downloaded file is enough.

Threads (`--threads`), context size (`--ctx-size`, default min(trained context, 8192)) and llama.cpp
batch size (`--llama-batch`, default = context) are configurable; requests are batched by the engine's
batcher exactly as for torch, and each engine batch is split into llama.cpp decode calls of at most
`n_batch` tokens and `n_seq_max` sequences.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..errors import ModelLoadError, ModelNotFoundError
from . import hub
from .backbone import ADAPTERS, UNPADDED, Backbone
from .cpu import cpu_has_amx

log = logging.getLogger("jinaserve.runtime.llamacpp")

DEFAULT_MAX_CTX = 8192
# GGUF `<arch>.pooling_type` values (llama.h enum llama_pooling_type)
_GGUF_POOLING = {1: "mean", 2: "cls", 3: "last"}


class LlamaCppUnavailableError(ModelLoadError):
    pass


def require_llama_cpp() -> Any:
    try:
        import llama_cpp
        import llama_cpp._logger  # installs the callback that routes llama.cpp's log through Python logging
    except ImportError as exc:
        raise LlamaCppUnavailableError(
            "the llamacpp runtime needs llama-cpp-python: pip install 'jinaserve[gguf]' (it compiles llama.cpp from "
            "source, which takes many minutes on a small machine; see docs/gguf.md)"
        ) from exc
    # llama.cpp's own log lines go through the "llama-cpp-python" logger: errors only unless set otherwise
    lcpp_log = logging.getLogger("llama-cpp-python")
    if lcpp_log.level == logging.NOTSET:
        lcpp_log.setLevel(logging.ERROR)
    return llama_cpp


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _extra_buffer_types(llama_cpp: Any, disable: bool) -> Iterator[None]:
    """Load a model with llama.cpp's extra buffer types (weight repacking: AMX, CPU_REPACK) switched off.

    On CPUs with AMX, llama.cpp repacks quantised weights into its AMX buffer and its AMX matmul then
    crashes the process (SIGSEGV in `ggml_backend_amx_mul_mat` on the first forward; llama.cpp issue
    ggml-org/llama.cpp#20824, reproduced here with a Q8_0 MiniLM on a Xeon with amx_int8). llama-cpp-python
    does not expose `use_extra_bufts` as an argument, so the default-parameters function it calls is wrapped
    for the duration of this one load (under a lock: loads in other threads see the same switch).
    """
    if not disable:
        yield
        return
    import llama_cpp.llama as llama_module

    low = llama_module.llama_cpp
    with _PARAMS_LOCK:
        original = low.llama_model_default_params

        def params_without_extra_bufts() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = params_without_extra_bufts
        try:
            log.info("CPU has AMX: llama.cpp weight repacking (extra buffer types) off, avoiding its AMX "
                     "matmul crash (ggml-org/llama.cpp#20824)")
            yield
        finally:
            low.llama_model_default_params = original


def is_gguf_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".gguf"


# ---------------------------------------------------------------------------------------------- files
def _pick(files: Sequence[Path], quant: str | None, where: str) -> Path:
    """One GGUF out of several: by quant (case-insensitive name match), or the only one."""
    models = sorted(f for f in files if not f.name.startswith("lora-") and "-lora-" not in f.name)
    if quant:
        q = quant.lower()
        hits = [f for f in models if fnmatch.fnmatch(f.name.lower(), f"*[-_.]{q}.gguf")]
        if not hits:
            raise ModelNotFoundError(f"no {quant} GGUF file in {where}; found: {', '.join(f.name for f in models)}")
        return hits[0]
    if len(models) == 1:
        return models[0]
    if not models:
        raise ModelNotFoundError(f"no .gguf file in {where}")
    raise ModelNotFoundError(f"{where} holds several GGUF files ({', '.join(f.name for f in models)}); choose one "
                             f"with --quant")


def gguf_file_pattern(spec: ModelSpec, quant: str | None) -> tuple[str, str]:
    """(quant, file glob) of `spec`'s GGUF repo: `quant` matched case-insensitively, default the row's."""
    gg = spec.gguf
    if gg is None:
        raise ModelNotFoundError(f"Model {spec.id!r} has no GGUF files in the catalog")
    quant = quant or gg.default_quant
    hit = quant if quant in gg.files else next((q for q in gg.files if q.lower() == quant.lower()), None)
    if hit is None:
        raise ModelNotFoundError(f"Model {spec.id!r} has no {quant} GGUF file; known: {', '.join(gg.files)}")
    return hit, gg.files[hit]


def locate_gguf(spec: ModelSpec, local_path: Path | None, *, quant: str | None, offline: bool = False,
                cache_dir: str | None = None) -> Path:
    """The GGUF file to load for `spec` (downloading only that file and the row's extra files)."""
    if local_path is not None:
        if is_gguf_file(local_path):
            return local_path
        if local_path.is_dir():
            return _pick(list(local_path.glob("*.gguf")), quant, str(local_path))
        raise ModelNotFoundError(f"{local_path} is neither a .gguf file nor a folder")
    gg = spec.gguf
    if gg is None and spec.hf_repo and spec.extra.get("gguf_convert"):
        raise ModelNotFoundError(
            f"Model {spec.id!r} has no published GGUF: convert {spec.hf_repo} with "
            f"`python -m jinaserve.runtimes.gguf_convert FOLDER {spec.id}-F16.gguf` ({spec.extra['gguf_convert']}), "
            f"then serve --models {spec.id}=/path/{spec.id}-F16.gguf; or use --runtime torch")
    if gg is None:
        raise ModelNotFoundError(
            f"Model {spec.id!r} has no GGUF files in the catalog; serve it with --runtime torch, or name a local "
            f"GGUF file: --models {spec.id}=/path/to/model.gguf")
    quant, pattern = gguf_file_pattern(spec, quant)
    try:
        folder = hub.fetch(gg.repo, revision=None, cache_dir=cache_dir, offline=offline,
                           allow_patterns=[pattern, *gg.extra_files])
    except hub.WeightsUnavailableError as exc:
        raise hub.WeightsUnavailableError(
            f"{exc.message} (the {quant} file only: `jinaserve pull {spec.id} --quant {quant}`)") from exc
    hits = sorted(p for p in folder.iterdir() if fnmatch.fnmatch(p.name, pattern))
    if not hits:
        raise ModelNotFoundError(f"{gg.repo} has no file matching {pattern} (quant {quant})")
    return hits[0]


# ---------------------------------------------------------------------------------------------- backbone
class LlamaCppBackbone(Backbone):
    """Per-token hidden states of a GGUF model through llama.cpp."""

    runtime = "llamacpp"
    capabilities = frozenset({ADAPTERS, UNPADDED})

    def __init__(self, path: Path, *, n_ctx: int | None = None, n_batch: int | None = None,
                 threads: int | None = None, flash_attn: bool = True) -> None:
        llama_cpp = require_llama_cpp()
        from llama_cpp import Llama

        self.path = Path(path)
        n_threads = threads or _default_threads()
        # Read the trained context first (from the metadata: no weights loaded) to cap the default context.
        self.metadata: dict[str, str] = read_metadata(self.path)
        arch = self.metadata.get("general.architecture", "?")
        n_ctx_train = int(self.metadata.get(f"{arch}.context_length") or DEFAULT_MAX_CTX)
        ctx = int(n_ctx or min(n_ctx_train, DEFAULT_MAX_CTX))
        batch = int(min(n_batch or ctx, ctx))
        with _extra_buffer_types(llama_cpp, cpu_has_amx()):
            self.llama = Llama(model_path=str(self.path), embedding=True, n_ctx=ctx, n_batch=batch,
                               n_ubatch=batch, n_threads=n_threads, n_threads_batch=n_threads,
                               pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE, flash_attn=flash_attn,
                               verbose=False)
        self._lib = llama_cpp
        self.n_ctx = int(self.llama.n_ctx())
        self.n_batch = int(self.llama.n_batch)
        self.n_seq_max = int(self.llama.context_params.n_seq_max) or 1
        self.n_embd = int(self.llama.n_embd())
        self.n_ctx_train = n_ctx_train
        self.threads = n_threads
        self.arch = self.metadata.get("general.architecture", "?")
        self._lock = threading.Lock()
        self._adapters: dict[Any, Any] = {}
        self._active_adapter: Any = None
        self.hidden_size = self.n_embd

    @property
    def gguf_pooling(self) -> str | None:
        value = self.metadata.get(f"{self.arch}.pooling_type")
        try:
            return _GGUF_POOLING.get(int(value)) if value is not None else None
        except ValueError:
            return None

    # ---------------------------------------------------------------- LoRA adapters (jina-embeddings-v3)
    def add_adapter(self, key: Any, path: Path, scale: float = 1.0) -> None:
        adapter = self._lib.llama_adapter_lora_init(self.llama.model, str(path).encode())
        if not adapter:
            raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {path}")
        self._adapters[key] = (adapter, float(scale))

    def use_adapter(self, key: Any) -> None:
        self.activate(key)

    def activate(self, key: Any) -> None:
        if key == self._active_adapter:
            return
        ctx = self.llama.ctx
        if key is None:
            rc = self._lib.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            adapter, scale = self._adapters[key]
            arr = (self._lib.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(scale)
            rc = self._lib.llama_set_adapters_lora(ctx, arr, 1, scales)
        if rc != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed ({rc}) for adapter {key!r}")
        self._active_adapter = key

    # ---------------------------------------------------------------- execution
    def hidden_states(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """[len(seq), n_embd] float32 per sequence."""
        for s in seqs:
            if len(s) > self.n_batch:
                raise ValueError(f"sequence of {len(s)} tokens exceeds the llama.cpp batch/context of {self.n_batch} "
                                 f"(raise --ctx-size / --llama-batch)")
        out: list[np.ndarray] = []
        with self._lock:
            group: list[Sequence[int]] = []
            used = 0
            for s in seqs:
                if group and (used + len(s) > self.n_batch or len(group) >= self.n_seq_max):
                    out.extend(self._decode(group))
                    group, used = [], 0
                group.append(s)
                used += len(s)
            if group:
                out.extend(self._decode(group))
        return out

    def _decode(self, group: list[Sequence[int]]) -> list[np.ndarray]:
        lib = self.llama
        batch = lib._batch
        batch.reset()
        nonempty = [(i, s) for i, s in enumerate(group) if len(s)]
        for seq_id, (_, s) in enumerate(nonempty):
            batch.add_sequence(list(s), seq_id, True)
        lib._ctx.kv_cache_clear()
        total = sum(len(s) for _, s in nonempty)
        result = [np.zeros((0, self.n_embd), dtype=np.float32) for _ in group]
        if total:
            lib._ctx.decode(batch)
            ptr = self._lib.llama_get_embeddings(lib._ctx.ctx)
            flat = np.ctypeslib.as_array(ptr, shape=(total * self.n_embd,)).reshape(total, self.n_embd).copy()
            pos = 0
            for i, s in nonempty:
                result[i] = flat[pos:pos + len(s)]
                pos += len(s)
        batch.reset()
        lib._ctx.kv_cache_clear()
        return result

    def encode(self, input_ids: Any, attention_mask: Any | None) -> Any:
        """Hidden states [B, T, H] as a torch tensor (zeros at padding); each row's unmasked tokens run as one
        llama.cpp sequence, without padding."""
        import torch

        ids = input_ids.detach().cpu().numpy()
        mask = (np.ones_like(ids) if attention_mask is None else attention_mask.detach().cpu().numpy()).astype(bool)
        seqs = [ids[b][mask[b]].tolist() for b in range(ids.shape[0])]
        states = self.hidden_states(seqs)
        hidden = np.zeros((ids.shape[0], ids.shape[1], self.n_embd), dtype=np.float32)
        for b, h in enumerate(states):
            hidden[b][mask[b]] = h
        return torch.from_numpy(hidden)

    def close(self) -> None:
        for adapter, _ in self._adapters.values():
            try:
                self._lib.llama_adapter_lora_free(adapter)
            except Exception:  # pragma: no cover - best effort at shutdown
                pass
        self._adapters.clear()
        self.llama.close()


def read_metadata(path: Path) -> dict[str, str]:
    """The GGUF key/values (strings), without loading tensors or creating a context."""
    lib = require_llama_cpp()
    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelLoadError(f"llama.cpp cannot read {path} (not a GGUF file, or an architecture this "
                             f"llama-cpp-python {getattr(lib, '__version__', '')} does not know)")
    try:
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1024)
        for i in range(lib.llama_model_meta_count(model)):
            n = lib.llama_model_meta_key_by_index(model, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", errors="replace")
            n = lib.llama_model_meta_val_str_by_index(model, i, buf, len(buf))
            if n >= 0:
                out[key] = buf.value.decode("utf-8", errors="replace")
        return out
    finally:
        lib.llama_model_free(model)


def _default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------- tokenizer
class GGUFTokenizer:
    """The GGUF's own vocabulary (llama.cpp tokenisation) behind the slice of the Hugging Face tokenizer
    interface the families use: `__call__` (with add_special_tokens / truncation / max_length),
    `decode`, `convert_tokens_to_ids`, special token ids, `len()`."""

    def __init__(self, backbone: LlamaCppBackbone) -> None:
        lib, llama = backbone._lib, backbone.llama
        self._llama = llama
        vocab = llama._model.vocab
        self._n_vocab = int(lib.llama_vocab_n_tokens(vocab))

        def tok(value: int) -> int | None:
            return int(value) if 0 <= int(value) < self._n_vocab else None

        self.bos_token_id = tok(lib.llama_vocab_bos(vocab))
        self.eos_token_id = tok(lib.llama_vocab_eos(vocab))
        sep = tok(lib.llama_vocab_sep(vocab))
        self.pad_token_id = tok(lib.llama_vocab_pad(vocab))
        self.unk_token_id = None
        self._prefix = [self.bos_token_id] if lib.llama_vocab_get_add_bos(vocab) and self.bos_token_id is not None \
            else []
        suffix = None
        if lib.llama_vocab_get_add_sep(vocab) and sep is not None:
            suffix = sep
        elif lib.llama_vocab_get_add_eos(vocab) and self.eos_token_id is not None:
            suffix = self.eos_token_id
        self._suffix = [suffix] if suffix is not None else []
        self.padding_side = "right"
        self.model_max_length = backbone.n_ctx

    def __len__(self) -> int:
        return self._n_vocab

    def encode_plain(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _encode(self, text: str, add_special_tokens: bool, max_length: int | None) -> list[int]:
        ids = self.encode_plain(text)
        extra = (self._prefix + self._suffix) if add_special_tokens else []
        if max_length is not None and len(ids) + len(extra) > max_length:
            ids = ids[:max(0, max_length - len(extra))]
        return (self._prefix + ids + self._suffix) if add_special_tokens else ids

    def __call__(self, text: str | Sequence[str], *, add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, **_: Any) -> dict[str, Any]:
        limit = max_length if truncation else None
        if isinstance(text, str):
            return {"input_ids": self._encode(text, add_special_tokens, limit)}
        return {"input_ids": [self._encode(t, add_special_tokens, limit) for t in text]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return self._llama.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")

    def convert_tokens_to_ids(self, token: str) -> int | None:
        ids = self.encode_plain(token)
        return ids[0] if len(ids) == 1 else None


def load_tokenizer(folder: Path, backbone: LlamaCppBackbone, padding_side: str | None = None) -> Any:
    """The HF tokenizer next to the GGUF when there is one, else the GGUF's own vocabulary."""
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        source = "tokenizer.json"
    else:
        tok = GGUFTokenizer(backbone)
        source = "GGUF vocabulary"
    if padding_side:
        tok.padding_side = padding_side
    log.info("tokeniser for %s: %s", backbone.path.name, source)
    return tok


def describe(path: Path) -> dict[str, Any]:
    """Metadata summary of a GGUF file (architecture, pooling, sizes) without loading the weights."""
    meta = read_metadata(path)
    arch = meta.get("general.architecture", "?")
    return {"architecture": arch, "name": meta.get("general.name"), "pooling_type": meta.get(f"{arch}.pooling_type"),
            "context_length": meta.get(f"{arch}.context_length"),
            "embedding_length": meta.get(f"{arch}.embedding_length"), "file_type": meta.get("general.file_type")}


def open_gguf(spec: ModelSpec, local_path: Path | None, opts: Any) -> LlamaCppBackbone:
    """Locate `spec`'s GGUF file and load it (`opts`: the load options: quant, offline, cache dir, context,
    batch, threads)."""
    require_llama_cpp()
    path = locate_gguf(spec, local_path, quant=opts.quant, offline=opts.offline, cache_dir=opts.cache_dir)
    return LlamaCppBackbone(path, n_ctx=getattr(opts, "gguf_ctx_size", None),
                            n_batch=getattr(opts, "gguf_batch_size", None), threads=opts.threads)


def lora_files(gguf_path: Path) -> dict[str, Path]:
    """LoRA adapters as llama.cpp's converter writes them next to a model: `lora-<name>-<model file name>` →
    {name: path}."""
    out: dict[str, Path] = {}
    for f in gguf_path.parent.glob(f"lora-*-{gguf_path.name}"):
        out[f.name[len("lora-"):-len(gguf_path.name) - 1]] = f
    return out


__all__ = ["GGUFTokenizer", "LlamaCppBackbone", "LlamaCppUnavailableError", "cpu_has_amx", "describe",
           "gguf_file_pattern", "is_gguf_file", "locate_gguf", "lora_files", "open_gguf"]
