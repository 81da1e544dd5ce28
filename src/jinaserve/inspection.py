"""`jinaserve inspect PATH_OR_ID`: what a checkpoint folder (or a cached hub repo) is, and whether it loads.

The first thing to run when a download misbehaves. It reads the folder's files without loading weights
(`--load` also loads the model) and reports: the recognised catalog row, family and layout and how they
were recognised; the tasks with their adapters and prompts; dimensions, max tokens, pooling; the licence;
image bounds for the multimodal models; required files that are missing. Problems (anything that stops
the model from loading) make the command exit with 1.

Accepted targets: a folder, `NAME=folder` (the row named, as `--models` takes it), a `.gguf` file, a
catalog id or a Hugging Face repo id (looked up in the local cache only: inspecting never downloads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .catalog import ModelSpec, lookup
from .catalog.licences import licence_notice
from .errors import JinaServeError
from .models.detect import FolderFacts, UnrecognisedCheckpointError, best_rule, recognise, unrecognised_jina_error
from .models.files import missing, tensor_shape
from .models.resolve import detect_spec, split_alias


@dataclass
class Report:
    target: str
    source: str = ""  # folder | Hugging Face cache (repo) | GGUF file | catalog
    folder: str | None = None
    model: str | None = None  # the catalog row it is served as (None: a generic checkpoint)
    family: str | None = None
    kind: str | None = None
    layout: str | None = None
    recognised_by: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    default_task: str | None = None
    pooling: str | None = None
    dims: int | None = None
    matryoshka_dims: list[int] = field(default_factory=list)
    max_tokens: int | None = None
    licence: str | None = None
    licence_notice: str | None = None
    image_pixels: dict[str, Any] | None = None
    found: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    load: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# --------------------------------------------------------------------------- building the report
def _config_int(facts: FolderFacts, key: str) -> int | None:
    for node in (facts.config, facts.config.get("text_config") or {}):
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, int):
            return value
    return None


def _fill_row(report: Report, spec: ModelSpec) -> None:
    report.model = spec.id if lookup(spec.id) is not None else None
    report.family, report.kind = spec.family, spec.kind
    report.tasks = [{"name": t.name, "adapter": t.adapter, "prefix": t.prefix} for t in spec.tasks]
    report.default_task, report.pooling = spec.default_task, spec.pooling
    report.dims, report.matryoshka_dims = spec.dims, list(spec.matryoshka_dims)
    report.max_tokens = spec.max_tokens
    report.licence = spec.licence
    report.licence_notice = licence_notice(spec.id, spec.licence)


def _image_pixels(spec: ModelSpec, folder: Path) -> dict[str, Any] | None:
    if spec.family not in ("jina_v4", "jina_reranker_m0"):
        return None
    from .models.image_processing import folder_pixel_bounds

    own = folder_pixel_bounds(folder)
    if spec.family == "jina_reranker_m0":
        from .models.jina_reranker_m0 import REFERENCE_PIXELS

        used, why = REFERENCE_PIXELS, "fixed by the reference code"
    elif spec.extra.get("image_pixels"):
        used, why = tuple(spec.extra["image_pixels"]), "the main jina-embeddings-v4 repo's bounds"
    else:
        used, why = own, "the folder's preprocessor_config.json"
    return {"folder": list(own) if own else None, "used": list(used) if used else None, "why": why}


def inspect_folder(report: Report, folder: Path, named: ModelSpec | None) -> None:
    facts = FolderFacts.read(folder)
    report.folder = str(folder)
    report.found = {"architectures": facts.architectures, "model_type": facts.model_type, "auto_map": facts.auto_map,
                    "adapter_folders": facts.adapter_folders, "modules": facts.module_types,
                    "prompts": facts.st_prompts, "model_card_title": facts.card_title,
                    "model_card_licence": facts.licence, "hf_cache_repo": facts.cache_repo}
    if not facts.config:
        gguf = sorted(p.name for p in folder.glob("*.gguf"))
        report.problems.append("no config.json: not a transformers checkpoint" +
                               (f" (GGUF files here: {gguf}; inspect one of them)" if gguf else ""))
        return
    spec: ModelSpec | None = named
    if named is not None:
        rule = best_rule(named, facts)
        report.recognised_by = "the name given (NAME=folder or the folder's name)"
        report.layout = rule.layout if rule else None
        try:
            other = recognise(facts)
        except UnrecognisedCheckpointError:
            other = None
        if named.detect_rules and rule is None:
            looks = f"; its files look like {other.row.id}" if other and other.row.id != named.id else ""
            report.warnings.append(f"the folder's files do not match {named.id}'s recognition rules{looks}")
    else:
        try:
            match = recognise(facts)
        except UnrecognisedCheckpointError as exc:
            report.problems.append(exc.message)
            return
        if match is not None:
            spec, report.layout, report.recognised_by = match.row, match.layout, f"its files ({match.how})"
        elif facts.jina_marks():
            report.problems.append(unrecognised_jina_error(facts).message)
            return
        else:
            spec = detect_spec(folder, folder.name)
            report.layout = f"generic {spec.family.replace('_', '-')} (not a catalog model)"
            report.recognised_by = "no Jina layout found: generic loader"
    assert spec is not None
    _fill_row(report, spec)
    hidden = _config_int(facts, "hidden_size")
    projection = spec.extra.get("dims_tensor")
    if spec.kind == "embedding" and projection:  # a projection's rows decide the vector size (ColBERT's linear)
        shape = tensor_shape(folder, str(projection))
        if shape and spec.dims and spec.dims != shape[0]:
            report.warnings.append(f"the weights' {projection} gives {shape[0]}-d vectors, the catalog says "
                                   f"{spec.dims}: {shape[0]}-d vectors are served")
        report.dims = shape[0] if shape else spec.dims
    elif spec.kind == "embedding" and hidden:  # the weights decide the vector size
        if spec.dims and spec.dims != hidden:
            report.warnings.append(f"the config's hidden size is {hidden}, the catalog says {spec.dims}: "
                                   f"{hidden}-d vectors are served")
        report.dims = hidden
    max_pos = _config_int(facts, "max_position_embeddings")
    if max_pos:
        usable = max_pos - 2 if facts.model_type in ("xlm-roberta", "roberta", "jina_embeddings_v3") else max_pos
        report.max_tokens = min(report.max_tokens or usable, usable)
    if facts.licence and facts.licence.lower() not in (report.licence or "").lower():
        report.warnings.append(f"the model card says licence {facts.licence!r} (catalog: {report.licence})")
        if report.licence in (None, "unknown"):
            report.licence = facts.licence
            report.licence_notice = licence_notice(spec.id, facts.licence)
    required, optional = missing(spec, facts)
    report.missing = required + [f"{m} (optional)" for m in optional]
    report.problems += [f"missing {m}" for m in required]
    report.image_pixels = _image_pixels(spec, folder)


def inspect_gguf(report: Report, path: Path, named: ModelSpec | None) -> None:
    report.source, report.folder = "GGUF file", str(path.parent)
    report.layout, report.family = "GGUF (llama.cpp runtime)", "gguf"
    if named is not None:
        _fill_row(report, named)
        report.recognised_by = "the name given"
    try:
        from .runtimes.llamacpp_runtime import describe

        report.found = {k: v for k, v in describe(path).items() if v is not None}
    except JinaServeError as exc:
        report.problems.append(exc.message)


def inspect_target(target: str, *, cache_dir: str | None = None, load: bool = False,
                   device: str = "cpu") -> Report:
    """The report for `target` (see the module docstring)."""
    report = Report(target)
    alias, raw = split_alias(target)
    named = lookup(alias) if alias else None
    if alias and named is None:
        report.problems.append(f"{alias!r} is not a catalog id (`jinaserve models` lists them)")
        return report
    path = Path(raw).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        inspect_gguf(report, path.resolve(), named)
    elif path.is_dir():
        report.source = "folder"
        inspect_folder(report, path.resolve(), named or lookup(path.resolve().name))
    else:
        row = lookup(raw)
        repo = row.hf_repo if row is not None else (raw if "/" in raw and not raw.startswith((".", "/", "~")) else None)
        if row is not None:
            _fill_row(report, row)
        if repo is None:
            report.problems.append(
                f"{raw!r} is not a folder, a .gguf file, a catalog id or a Hugging Face repo id"
                if row is None else f"{raw} is published as GGUF only: serve it with --runtime llamacpp")
            return report
        from .runtimes.hub import cached_snapshot

        folder = cached_snapshot(repo, row.revision if row else None, cache_dir)
        if folder is None:
            report.source = "catalog" if row else "Hugging Face repo"
            report.problems.append(f"{repo} is not in the local cache: `jinaserve pull {raw}` downloads it "
                                   f"(inspect never downloads)")
            return report
        report.source = f"Hugging Face cache ({repo})"
        inspect_folder(report, folder, row)
    if load and report.ok:
        report.load = try_load(target if not path.exists() else (f"{alias}={path}" if alias else str(path)), device)
        if report.load.get("error"):
            report.problems.append(f"loading failed: {report.load['error']}")
    return report


def try_load(arg: str, device: str) -> dict[str, Any]:
    from .config import Settings
    from .engine.registry import load_service

    started = time.perf_counter()
    try:
        service = load_service(arg, Settings(models=[arg], offline=True, device=device))  # type: ignore[arg-type]
    except Exception as exc:
        return {"error": getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                "seconds": round(time.perf_counter() - started, 2)}
    try:
        return {"served_as": service.id, "dims": service.spec.dims, "seconds": round(time.perf_counter() - started, 2)}
    finally:
        service.close()


# --------------------------------------------------------------------------- rendering
def render(report: Report) -> str:
    """Readable text (rich markup)."""
    lines: list[str] = []

    def row(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"[bold]{label:<15}[/bold] {value}")

    row("target", report.target)
    row("source", report.source)
    row("folder", report.folder)
    row("model", report.model or ("(generic checkpoint)" if report.family else None))
    row("family", report.family)
    row("layout", report.layout)
    row("recognised by", report.recognised_by)
    row("kind", report.kind)
    if report.tasks:
        lines.append(f"[bold]{'tasks':<15}[/bold] (default: {report.default_task or 'none: base model'})")
        for t in report.tasks:
            adapter = f"adapter {t['adapter']}" if t["adapter"] else "no adapter (merged or none)"
            lines.append(f"  {t['name']:<20} {adapter:<28} prefix {t['prefix']!r}")
    row("pooling", report.pooling)
    row("dimensions", report.dims)
    row("matryoshka", ", ".join(map(str, report.matryoshka_dims)))
    row("max tokens", report.max_tokens)
    row("licence", report.licence)
    if report.image_pixels:
        ip = report.image_pixels
        row("image pixels", f"{ip['used']} ({ip['why']}; the folder says {ip['folder']})")
    for key in ("architectures", "model_type", "auto_map", "adapter_folders", "modules", "model_card_title"):
        row(key.replace("_", " "), report.found.get(key))
    row("missing", ", ".join(report.missing))
    if report.load:
        row("load", report.load.get("error") or f"ok in {report.load['seconds']} s as {report.load['served_as']}")
    if report.licence_notice:
        lines.append(f"[yellow]notice:[/yellow] {report.licence_notice}")
    lines += [f"[yellow]warning:[/yellow] {w}" for w in report.warnings]
    lines += [f"[red]problem:[/red] {p}" for p in report.problems]
    lines.append("[green]would load[/green]" if report.ok else "[red]would not load[/red]")
    return "\n".join(lines)
