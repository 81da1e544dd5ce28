"""Turn what a user typed (`--models ...`) into a catalog row and a folder of weights.

Accepted forms: a catalog id or alias (`jina-embeddings-v3`), a Hugging Face repo id
(`BAAI/bge-small-en-v1.5`), a local folder, or `NAME=SOURCE` to serve SOURCE under NAME.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from ..catalog import ModelSpec, lookup
from ..errors import ModelNotFoundError
from ..runtimes import hub
from .detect import FolderFacts, recognise, recognise_gguf, unrecognised_jina_error
from .loading import LoadOptions

log = logging.getLogger("jinaserve.resolve")


@dataclass
class ModelRef:
    served_id: str
    spec: ModelSpec
    local_path: Path | None = None  # set when the user named a folder
    repo: str | None = None  # hub repo to fetch when no folder was named


def split_alias(arg: str) -> tuple[str | None, str]:
    name, sep, target = arg.partition("=")
    if sep and name and target:
        return name.strip(), target.strip()
    return None, arg.strip()


def detect_spec(folder: Path, served_id: str, repo: str | None = None) -> ModelSpec:
    """The catalog row of a checkpoint folder, recognised from its own files whatever the folder is called
    (`models/detect.py`); a generic row for a checkpoint that is no Jina model."""
    facts = FolderFacts.read(folder)
    if not facts.config:
        raise ModelNotFoundError(f"{folder} has no config.json: not a transformers checkpoint")
    match = recognise(facts)
    if match is not None:
        log.info("recognised %s as %s (%s; by %s)", folder, match.row.id, match.layout, match.how)
        return replace(match.row, id=served_id, hf_repo=repo or match.row.hf_repo)
    if facts.jina_marks():
        raise unrecognised_jina_error(facts)
    config = facts.config
    archs = facts.architectures
    licence = facts.licence or "unknown"
    max_pos = int(config.get("max_position_embeddings", 512) or 512)
    if any(a.endswith("ForSequenceClassification") for a in archs) and not (folder / "modules.json").is_file():
        return ModelSpec(id=served_id, family="cross_encoder", kind="rerank", hf_repo=repo, licence=licence,
                         max_tokens=min(max_pos, 8192), description="cross-encoder (detected)")
    return ModelSpec(id=served_id, family="sentence_transformer", kind="embedding", hf_repo=repo, licence=licence,
                     pooling="mean", dims=config.get("hidden_size"), max_tokens=min(max_pos, 8192),
                     description="bi-encoder (detected)")



def resolve(arg: str) -> ModelRef:
    alias, target = split_alias(arg)
    path = Path(target).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":  # llama.cpp runtime; no row: read from the GGUF
        row = lookup(alias) if alias else recognise_gguf([path], path.resolve().parent)
        served = alias or path.stem
        spec = replace(row, id=served) if row else ModelSpec(id=served, family="", kind="embedding")
        return ModelRef(served, spec, local_path=path.resolve())
    if path.is_dir():
        # a folder named like a catalog id uses that row (`--models ./jina-embeddings-v2-base-en`)
        row = lookup(alias) if alias else lookup(path.resolve().name)
        served = alias or path.resolve().name
        if row is None and not (path / "config.json").is_file() and any(path.glob("*.gguf")):
            row = recognise_gguf(sorted(path.glob("*.gguf")), path.resolve())  # a folder of GGUF files
            spec = replace(row, id=served) if row else ModelSpec(id=served, family="", kind="embedding")
        else:
            spec = replace(row, id=served) if row else detect_spec(path, served)
        return ModelRef(served, spec, local_path=path.resolve())
    row = lookup(target)
    if row is not None:
        served = alias or row.id
        return ModelRef(served, replace(row, id=served), repo=row.hf_repo)
    if "/" in target and not target.startswith((".", "/", "~")):
        served = alias or target
        # family detected after download
        return ModelRef(served, ModelSpec(id=served, family="", kind="embedding", hf_repo=target),
                        repo=target)
    raise ModelNotFoundError(f"Unknown model {target!r}: not a catalog id, a Hugging Face repo id "
                             f"(org/name) or an existing folder. `jinaserve models` lists the catalog.")


def locate(ref: ModelRef, opts: LoadOptions) -> tuple[ModelRef, Path]:
    """The folder holding `ref`'s weights: a named folder, a bundled copy (a catalog row shipped in a Python
    package is never downloaded), the HF cache, or a download of the files its family needs."""
    if ref.local_path is not None:
        return ref, ref.local_path
    assert ref.repo is not None
    bundled = hub.bundled_folder(ref.spec.bundled_path) if ref.spec.bundled_path else None
    if bundled is not None and ref.repo == ref.spec.hf_repo:
        log.info("using the bundled copy of %s from %s (no download)", ref.spec.id, bundled)
        return ref, bundled
    from .files import select_download

    spec = ref.spec if ref.spec.family else None
    folder = hub.fetch(ref.repo, revision=ref.spec.revision, cache_dir=opts.cache_dir, offline=opts.offline,
                       select=lambda names: select_download(names, spec), quiet=opts.quiet,
                       model=ref.served_id, licence=spec.licence if spec else None)
    if not ref.spec.family:
        ref = replace(ref, spec=detect_spec(folder, ref.served_id, ref.repo))
    return ref, folder
