"""The files a family reads from a checkpoint folder.

Two users: `jinaserve inspect` (which required files are missing) and the hub download (only these files
are fetched: weights, configs, tokenizer, adapters, model card; never ONNX/OpenVINO/TF/Flax/GGUF copies or
remote code, which no family runs). Per family, `FAMILY_NEEDS` adds what only that family reads (task
adapter folders, a projector, a score head); a family without an entry needs the common files only.
"""

from __future__ import annotations

import fnmatch
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import ModelSpec
from .detect import FolderFacts

# --------------------------------------------------------------------------- downloads
# Globs of files any family may read (fnmatch: `*` also matches `/`, so sub-folders are included).
DOWNLOAD_INCLUDE = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.tiktoken", "README.md", "LICENSE*",
                    "NOTICE*")
# Copies in other formats and code: never needed (the GGUF runtime downloads its one file separately).
DOWNLOAD_EXCLUDE = ("onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.gguf", "*.h5", "*.msgpack",
                    "*.ot", "*.tflite", "*.mlmodel", "*.py", "training_args.bin", "optimizer.bin", "scheduler.bin",
                    "rng_state*.pth", "*.pt", "*.ckpt")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_download(names: Iterable[str], spec: ModelSpec | None = None) -> list[str]:
    """The repo files to download for `spec` (the family's extra globs on top of the common ones);
    `*.bin` weights only in folders that have no `*.safetensors` (repos often ship both)."""
    extra = FAMILY_DOWNLOAD.get(spec.family, ()) if spec is not None else ()
    chosen = [n for n in names if _matches(n, (*DOWNLOAD_INCLUDE, *extra)) and not _matches(n, DOWNLOAD_EXCLUDE)]
    has_st = {n.rpartition("/")[0] for n in chosen if n.endswith(".safetensors")}
    return sorted(n for n in chosen if not (n.endswith(".bin") and n.rpartition("/")[0] in has_st))


# Download globs a family reads beyond DOWNLOAD_INCLUDE (adapters, projectors and image processor configs are
# .json / .safetensors files already). A new family adds its globs here.
FAMILY_DOWNLOAD: dict[str, tuple[str, ...]] = {
    "jina_colbert": ("artifact.metadata",),  # Stanford ColBERT's settings: markers, query length, attention
}


# --------------------------------------------------------------------------- required files (inspect)
@dataclass(frozen=True)
class Requirement:
    what: str  # e.g. "task adapter retrieval.query"
    any_of: tuple[str, ...] = ()  # globs (relative to the folder); one must match
    tensors: tuple[str, ...] = ()  # or: tensor names that must be in the safetensors weights
    warn_only: bool = False  # a missing file that limits the model (e.g. images) but does not stop loading

    def met(self, facts: FolderFacts, keys: Callable[[], set[str]]) -> bool:
        if self.any_of and not any(_has(facts, g) for g in self.any_of):
            return False
        if not self.tensors or not keys():  # no safetensors header to read (.bin weights): cannot tell
            return True
        return all(any(k.endswith(t) for k in keys()) for t in self.tensors)


def _has(facts: FolderFacts, pattern: str) -> bool:
    """A glob without '/' matches top-level names only (weights of an adapter are no model weights)."""
    if "/" in pattern:
        return facts.has(pattern)
    return any("/" not in n and fnmatch.fnmatchcase(n, pattern) for n in facts.files)


TOKENIZER = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "tokenizer.model", "spiece.model",
             "vocab.json")
WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def _prefix(facts: FolderFacts) -> str:
    """Where the transformer lives inside a sentence-transformers folder ('' = the root)."""
    if facts.config_file is None or facts.config_file.parent == facts.folder:
        return ""
    return facts.config_file.parent.relative_to(facts.folder).as_posix() + "/"


def common_needs(facts: FolderFacts) -> list[Requirement]:
    p = _prefix(facts)
    return [Requirement("config.json", (f"{p}config.json",)),
            Requirement("tokenizer", tuple(f"{p}{t}" for t in TOKENIZER)),
            Requirement("weights (*.safetensors or pytorch_model.bin)", tuple(f"{p}{w}" for w in WEIGHTS))]


def _adapter(folder: str, task: str) -> list[Requirement]:
    return [Requirement(f"adapter config of {task}", (f"{folder}/adapter_config.json",)),
            Requirement(f"adapter weights of {task}", (f"{folder}/adapter_model.safetensors",
                                                       f"{folder}/adapter_model.bin"))]


def _v3(spec: ModelSpec, facts: FolderFacts) -> list[Requirement]:
    if facts.model_type != "jina_embeddings_v3" and "JinaEmbeddingsV3Model" not in facts.architectures:
        return []  # remote-code layout: the task LoRAs are stacked inside the main weights
    return [r for t in spec.tasks if t.adapter for r in _adapter(t.adapter, t.name)]


def _v5(spec: ModelSpec, facts: FolderFacts) -> list[Requirement]:
    return [r for a in sorted({t.adapter for t in spec.tasks if t.adapter}) for r in _adapter(f"adapters/{a}", a)]


def _v4(spec: ModelSpec, facts: FolderFacts) -> list[Requirement]:
    out = [Requirement("image processor config (images use defaults without it)", ("preprocessor_config.json",),
                       warn_only=True)]
    if any(t.adapter for t in spec.tasks):
        out += _adapter("adapters", "the tasks " + ", ".join(sorted({t.adapter for t in spec.tasks if t.adapter})))
    if "return_multivector" in spec.options:
        out.append(Requirement("multi-vector projector", tensors=("multi_vector_projector.weight",)))
    return out


FAMILY_NEEDS: dict[str, Callable[[ModelSpec, FolderFacts], list[Requirement]]] = {
    "jina_v3": _v3,
    "jina_v5": _v5,
    "jina_v4": _v4,
    "jina_reranker_v3": lambda spec, facts: [Requirement("projector", tensors=("projector.0.weight",
                                                                               "projector.2.weight"))],
    "jina_reranker_m0": lambda spec, facts: [
        Requirement("score head", tensors=("score.0.weight", "score.2.weight")),
        Requirement("image processor config (images use defaults without it)", ("preprocessor_config.json",),
                    warn_only=True)],
    "jina_clip": lambda spec, facts: [
        Requirement("image processor config (images use defaults without it)", ("preprocessor_config.json",),
                    warn_only=True)],
    "jina_colbert": lambda spec, facts: [
        Requirement("ColBERT projection (linear.weight)", tensors=("linear.weight",)),
        Requirement("ColBERT settings artifact.metadata (the row's defaults are used without it)",
                    ("artifact.metadata",), warn_only=True)],
    "jina_reranker_v1": lambda spec, facts: [Requirement("classifier head", tensors=("classifier.weight",))],
}


def requirements(spec: ModelSpec, facts: FolderFacts) -> list[Requirement]:
    needs = FAMILY_NEEDS.get(spec.family)
    return [*common_needs(facts), *(needs(spec, facts) if needs else [])]


def missing(spec: ModelSpec, facts: FolderFacts) -> tuple[list[str], list[str]]:
    """(missing required files, missing optional files) of `spec`'s family in `facts.folder`."""
    cache: dict[str, set[str]] = {}

    def keys() -> set[str]:
        if "k" not in cache:
            cache["k"] = weight_keys(facts.folder)
        return cache["k"]

    required, optional = [], []
    for req in requirements(spec, facts):
        if not req.met(facts, keys):
            (optional if req.warn_only else required).append(req.what)
    required += [f"weight shard {s} (listed in model.safetensors.index.json)" for s in missing_shards(facts.folder)]
    return required, optional


# --------------------------------------------------------------------------- safetensors headers
def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor name → dtype, shape, offsets); {} if unreadable."""
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return {}
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return {}
    return header if isinstance(header, dict) else {}


def safetensors_keys(path: Path) -> set[str]:
    """Tensor names in a .safetensors file, from its JSON header (no tensor is read)."""
    return {k for k in _safetensors_header(path) if k != "__metadata__"}


def tensor_shape(folder: Path, name: str) -> tuple[int, ...] | None:
    """The shape of tensor `name` in the folder's .safetensors files (headers only), None if not found."""
    for f in sorted(folder.glob("*.safetensors")):
        entry = _safetensors_header(f).get(name)
        if isinstance(entry, dict) and isinstance(entry.get("shape"), list):
            return tuple(int(d) for d in entry["shape"])
    return None


def weight_keys(folder: Path) -> set[str]:
    out: set[str] = set()
    for f in sorted(folder.glob("*.safetensors")):
        out |= safetensors_keys(f)
    return out


def missing_shards(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    try:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
    except (OSError, ValueError):
        return []
    return sorted({s for s in weight_map.values() if not (folder / s).is_file()})
