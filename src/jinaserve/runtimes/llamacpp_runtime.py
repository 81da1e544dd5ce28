"""The `llamacpp` runtime: GGUF files executed by llama.cpp (through llama-cpp-python).

Only the network execution differs from the torch path. `LlamaCppBackbone` stands in for a
transformers backbone: called as `model(input_ids=..., attention_mask=...)` it returns an object whose
`last_hidden_state` holds llama.cpp's per-token hidden states (context created with `embeddings=True`
and pooling NONE), padded back to the batch layout. The model families are then constructed around it
unchanged, so prompts, task → per-task file, pooling (mean / cls / last over the mask), Dense layers,
the jina-reranker-v3 projector (torch, on the token states at its special tokens), Matryoshka
truncation, normalisation and encodings are the very same code as with torch.

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
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..errors import ModelLoadError, ModelNotFoundError
from . import hub

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


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU reports Intel AMX int8 tiles (Sapphire Rapids and later)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


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
    if gg is None and spec.family == "jina_v3":
        raise ModelNotFoundError(
            f"Model {spec.id!r} has no published GGUF: convert jinaai/jina-embeddings-v3 (the original layout) with "
            f"`python -m jinaserve.runtimes.gguf_convert FOLDER {spec.id}-F16.gguf` (it writes one "
            f"lora-<task>-{spec.id}-F16.gguf adapter per task next to it), then serve "
            f"--models {spec.id}=/path/{spec.id}-F16.gguf; or use --runtime torch")
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
class LlamaCppBackbone:
    """Per-token hidden states of a GGUF model; callable like a transformers backbone."""

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
        # shape hints used by the families (config.hidden_size...)
        self.config = SimpleNamespace(hidden_size=self.n_embd, max_position_embeddings=n_ctx_train)

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

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, **_: Any) -> SimpleNamespace:
        """transformers-style forward: `.last_hidden_state` [B, T, H] (zeros at padding)."""
        import torch

        ids = input_ids.detach().cpu().numpy()
        mask = (np.ones_like(ids) if attention_mask is None else attention_mask.detach().cpu().numpy()).astype(bool)
        seqs = [ids[b][mask[b]].tolist() for b in range(ids.shape[0])]
        states = self.hidden_states(seqs)
        hidden = np.zeros((ids.shape[0], ids.shape[1], self.n_embd), dtype=np.float32)
        for b, h in enumerate(states):
            hidden[b][mask[b]] = h
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))

    # transformers-module look-alikes used by some families
    def eval(self) -> LlamaCppBackbone:
        return self

    def to(self, *_: Any, **__: Any) -> LlamaCppBackbone:
        return self

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


# ---------------------------------------------------------------------------------------------- specs
def detect_gguf_spec(served_id: str, backbone: LlamaCppBackbone) -> ModelSpec:
    """A row for a GGUF file that is not in the catalog: a plain text-embedding model."""
    pooling = backbone.gguf_pooling
    if pooling is None:
        log.warning("%s has no pooling type in its metadata: using mean pooling (name a catalog row with "
                    "--models ROW=/path/file.gguf to use the row's pooling)", backbone.path.name)
        pooling = "mean"
    return ModelSpec(id=served_id, family="gguf_text", kind="embedding", pooling=pooling,  # type: ignore[arg-type]
                     dims=backbone.n_embd, max_tokens=backbone.n_ctx_train,
                     description=f"GGUF {backbone.arch} (detected)")


# ---------------------------------------------------------------------------------------------- loading
def load_family(spec: ModelSpec, local_path: Path | None, opts: Any) -> Any:
    """Build `spec`'s family around llama.cpp. `opts` is a LoadOptions."""
    require_llama_cpp()
    gguf_path = locate_gguf(spec, local_path, quant=opts.quant, offline=opts.offline, cache_dir=opts.cache_dir)
    backbone = LlamaCppBackbone(gguf_path, n_ctx=getattr(opts, "gguf_ctx_size", None),
                                n_batch=getattr(opts, "gguf_batch_size", None), threads=opts.threads)
    try:
        if not spec.family:
            spec = detect_gguf_spec(spec.id, backbone)
        family = _build(spec, gguf_path, backbone, opts)
    except Exception:
        backbone.close()
        raise
    log.info("loaded %s from %s via llama.cpp (arch=%s, ctx=%d, batch=%d, seq_max=%d, threads=%d)", spec.id,
             gguf_path.name, backbone.arch, backbone.n_ctx, backbone.n_batch, backbone.n_seq_max, backbone.threads)
    family.runtime = "llamacpp"
    family.gguf_file = str(gguf_path)
    return family


def _build(spec: ModelSpec, gguf_path: Path, backbone: LlamaCppBackbone, opts: Any) -> Any:
    from ..models import family_class
    from ..models.text_embedding import TextEmbeddingFamily

    folder = gguf_path.parent
    cls = family_class(spec.family)
    hook = getattr(cls, "load_gguf", None)
    if hook is not None:  # a family with its own llama.cpp wiring
        return hook(spec, folder, backbone, opts)
    if spec.family == "jina_v3":
        return _build_v3(spec, gguf_path, backbone)
    if spec.family == "jina_reranker_v3":
        return _build_reranker_v3(cls, spec, folder, backbone, opts)
    if isinstance(cls, type) and issubclass(cls, TextEmbeddingFamily):
        return _build_text_embedding(cls, spec, folder, backbone)
    raise ModelLoadError(f"model family {spec.family!r} ({spec.id}) has no llama.cpp path; use --runtime torch")


def _build_text_embedding(cls: Any, spec: ModelSpec, folder: Path, backbone: LlamaCppBackbone) -> Any:
    kwargs: dict[str, Any] = {}
    pooling = spec.pooling
    max_tokens = spec.max_tokens
    dims = backbone.n_embd
    if spec.family == "sentence_transformer" and (folder / "modules.json").is_file():
        # a GGUF inside a sentence-transformers folder: its Pooling / Dense / max_seq_length apply
        from ..models.sentence_transformer import _load_dense, read_st_layout
        from ..runtimes.torch_runtime import select_dtype

        layout = read_st_layout(folder)
        pooling = layout["pooling"] or pooling
        max_tokens = layout["max_seq_length"] or max_tokens
        kwargs["dense"] = [_load_dense(p, "cpu", select_dtype("cpu")) for p in layout["dense"]]
        if kwargs["dense"]:
            dims = kwargs["dense"][-1][0].out_features
    if spec.dims and spec.dims != dims and not kwargs.get("dense"):
        log.warning("%s: the GGUF's hidden size is %d, the catalog says %d; serving %d-d vectors", spec.id, dims,
                    spec.dims, dims)
    max_tokens = min(int(max_tokens or backbone.n_ctx), backbone.n_ctx, backbone.n_batch)
    spec = replace(spec, dims=dims, max_tokens=max_tokens, pooling=pooling)  # type: ignore[arg-type]
    padding_side = spec.extra.get("padding_side")
    tokenizer = load_tokenizer(folder, backbone, padding_side)
    return cls(spec, backbone, tokenizer, device="cpu", pooling=pooling, padding_side=padding_side,
               max_tokens=max_tokens, **kwargs)


def lora_files(gguf_path: Path) -> dict[str, Path]:
    """jina-embeddings-v3's task LoRAs as llama.cpp's converter writes them next to the model:
    `lora-<task>-<model file name>` → {task: path}."""
    out: dict[str, Path] = {}
    for f in gguf_path.parent.glob(f"lora-*-{gguf_path.name}"):
        out[f.name[len("lora-"):-len(gguf_path.name) - 1]] = f
    return out


def _build_v3(spec: ModelSpec, gguf_path: Path, backbone: LlamaCppBackbone) -> Any:
    """jina-embeddings-v3: the base GGUF + one llama.cpp LoRA adapter per task, switched per batch (items of
    different adapters never share a batch: the engine groups by adapter)."""
    from ..models.jina_v3 import JinaV3Family
    from ..models.text_embedding import TextEmbeddingFamily

    files = lora_files(gguf_path)
    # the converter names each file after the task (`lora_adaptations`); the row's adapter key may differ
    by_adapter = {t.adapter: files.get(t.name) or files.get(t.adapter) for t in spec.tasks if t.adapter}
    needed = set(by_adapter)
    missing = sorted(a for a, f in by_adapter.items() if f is None)
    if missing:
        raise ModelLoadError(f"{spec.id}: no LoRA GGUF for {missing} next to {gguf_path.name} (expected "
                             f"lora-<task>-{gguf_path.name}, as llama.cpp's converter writes them); found "
                             f"{sorted(files) or 'none'}")
    import tempfile

    from .gguf_lora import fold_token_type_lora

    # llama.cpp ignores the token-type LoRA the converter writes: fold it into the word-embedding LoRA (exact),
    # in a temporary copy (llama.cpp reads the adapter into memory at init, so the copy can go right after).
    with tempfile.TemporaryDirectory(prefix="jinaserve-lora-") as tmp:
        for name in sorted(needed):
            src = by_adapter[name]
            assert src is not None
            folded = Path(tmp) / src.name
            backbone.add_adapter(name, folded if fold_token_type_lora(src, folded) else src)

    class GGUFJinaV3Family(JinaV3Family):
        """JinaV3Family (prefixes, grouping by adapter, mean pooling, late chunking) on llama.cpp adapters."""

        def __init__(self, spec: ModelSpec, model: LlamaCppBackbone, tokenizer: Any) -> None:
            TextEmbeddingFamily.__init__(self, spec, model, tokenizer, device="cpu", pooling="mean",
                                         padding_side="right")
            self.adapter_mode = "llamacpp"
            self.adapter_names = sorted(needed)

        def prepare_task(self, task: str | None) -> None:
            return None

        def forward_hidden(self, input_ids: Any, attention_mask: Any, group: Any) -> Any:
            self.model.activate(group if isinstance(group, str) else None)
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    max_tokens = min(spec.max_tokens, backbone.n_ctx, backbone.n_batch, max(1, backbone.n_ctx_train - 2))
    spec = replace(spec, dims=backbone.n_embd, max_tokens=max_tokens)
    tokenizer = load_tokenizer(gguf_path.parent, backbone, "right")
    return GGUFJinaV3Family(spec, backbone, tokenizer)


def _build_reranker_v3(cls: Any, spec: ModelSpec, folder: Path, backbone: LlamaCppBackbone, opts: Any) -> Any:
    import torch

    from ..models.jina_reranker_v3 import load_projector_state

    if not (folder / "projector.safetensors").is_file() and not list(folder.glob("*.safetensors")):
        raise ModelLoadError(f"{folder} has no projector.safetensors next to {backbone.path.name}: jina-reranker-v3 "
                             f"needs it (it is in the jina-reranker-v3-GGUF repo)")
    state = load_projector_state(folder)
    w0, w2 = state["projector.0.weight"].float(), state["projector.2.weight"].float()
    if w0.shape[1] != backbone.n_embd:
        raise ModelLoadError(f"projector input size {w0.shape[1]} does not match the GGUF's hidden size "
                             f"{backbone.n_embd}")
    projector = torch.nn.Sequential(torch.nn.Linear(w0.shape[1], w0.shape[0], bias=False), torch.nn.ReLU(),
                                    torch.nn.Linear(w2.shape[1], w2.shape[0], bias=False))
    projector[0].weight.data.copy_(w0)
    projector[2].weight.data.copy_(w2)
    projector.eval()
    for p in projector.parameters():
        p.requires_grad_(False)
    tokenizer = load_tokenizer(folder, backbone)
    context = backbone.n_batch
    limit = getattr(opts, "rerank_block_tokens", None)
    if limit:
        context = min(context, int(limit))
    return cls(spec, backbone, projector, tokenizer, device="cpu", context=context)


def describe(path: Path) -> dict[str, Any]:
    """Metadata summary of a GGUF file (architecture, pooling, sizes) without loading the weights."""
    meta = read_metadata(path)
    arch = meta.get("general.architecture", "?")
    return {"architecture": arch, "name": meta.get("general.name"), "pooling_type": meta.get(f"{arch}.pooling_type"),
            "context_length": meta.get(f"{arch}.context_length"),
            "embedding_length": meta.get(f"{arch}.embedding_length"), "file_type": meta.get("general.file_type")}


__all__ = ["GGUFTokenizer", "LlamaCppBackbone", "LlamaCppUnavailableError", "describe", "gguf_file_pattern",
           "is_gguf_file",
           "load_family", "locate_gguf"]
