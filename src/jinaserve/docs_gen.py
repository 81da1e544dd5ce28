"""The reference tables of the documentation, generated from the code.

`python -m jinaserve.docs_gen` (= `make docs-gen`) rewrites every block between
`<!-- generated:NAME -->` and `<!-- /generated:NAME -->` in the files of `BLOCKS`; `--check` rewrites
nothing and exits 1 naming each stale block. The sources are the code itself: `Settings` (configuration),
the typer app (command line), the catalog (models, GGUF files) and the FastAPI app (endpoints). A merge
that adds a setting, a command, a flag, a catalog row or an endpoint needs only `make docs-gen`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# `serve` flags whose parameter name is not the setting's name (all others are the same name)
SERVE_FLAG_SETTINGS = {"api_key": "api_keys", "ctx_size": "gguf_ctx_size", "llama_batch": "gguf_batch_size"}

# Where a family is explained, relative to docs/models/index.md (rerank rows all go to rerankers.md).
FAMILY_PAGES = {
    "sentence_transformer": "#generic-checkpoints",
    "cross_encoder": "#generic-checkpoints",
    "jina_v3": "jina-embeddings-v3.md",
    "jina_v5": "jina-text.md",
    "jina_code": "jina-text.md",
    "jina_v2": "jina-text.md",
    "jina_v4": "jina-embeddings-v4.md",
    "gguf_text": "../gguf.md",
    "jina_clip": "../more-models.md",
    "jina_colbert": "../more-models.md",
    "jina_reranker_v1": "../more-models.md",
}


def _cell(value: Any) -> str:
    """One Markdown table cell: pipes escaped, whitespace collapsed."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    lines = ["| " + " | ".join(header) + " |", align or "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def cli_commands() -> dict[str, Any]:
    """Command name -> its (typer) command object, in the order `jinaserve --help` lists them; the commands of
    a sub-app are named "group command" (`batch run`)."""
    import typer

    from .cli import app

    out: dict[str, Any] = {}
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        if sub:  # a sub-app (`jinaserve batch run`): its commands, each under "group command"
            out.update({f"{name} {sub_name}": sub_command for sub_name, sub_command in sub.items()})
        else:
            out[name] = command
    return out


def _is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def option_names(param: Any) -> str:
    names = ", ".join(param.opts)
    if getattr(param, "secondary_opts", None):
        names += " / " + ", ".join(param.secondary_opts)
    return names


def _type_name(param: Any) -> str:
    annotation = param.type_descriptor.annotation
    inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
    if inner is bool:
        return "flag"
    return {str: "text", int: "integer", float: "number"}.get(inner, getattr(inner, "__name__", str(inner)))


def serve_flags() -> dict[str, str]:
    """Setting name -> the `jinaserve serve` flag that sets it."""
    from .config import Settings

    out: dict[str, str] = {}
    for param in cli_commands()["serve"].params:
        setting = SERVE_FLAG_SETTINGS.get(param.name, param.name)
        if setting in Settings.model_fields and _is_option(param):
            out[setting] = option_names(param) + (" (repeatable)" if param.multiple else "")
    return out


def _default(param: Any) -> str:
    """The flag's own default; `–` where an unset flag leaves the setting (or the command) to decide."""
    if param.default is None or param.default in ((), []):
        return "–"
    if param.is_flag and param.secondary_opts:
        return f"`{param.opts[0] if param.default else param.secondary_opts[0]}`"
    if param.is_flag:
        return "off" if not param.default else "on"
    return f"`{json.dumps(param.default)}`"


def cli_reference() -> str:
    parts: list[str] = []
    for name, command in cli_commands().items():
        arguments = [p for p in command.params if not _is_option(p)]
        usage = " ".join(p.name.upper() + ("..." if p.nargs == -1 else "") for p in arguments)
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        parts.append(f"### `jinaserve {name}`\n\n{summary}\n\n```text\njinaserve {name} [OPTIONS]"
                     f"{' ' + usage if usage else ''}\n```")
        rows = []
        for p in command.params:
            if _is_option(p):
                kind = _type_name(p) + (", repeatable" if p.multiple else "")
                rows.append([f"`{option_names(p)}`", kind, _default(p), _cell(p.help or "")])
            else:
                count = ", one or more" if p.nargs == -1 else ""
                rows.append([f"`{p.name.upper()}`", f"argument{count}", "required" if p.required else "–",
                             _cell(p.help or "")])
        parts.append(_table(["Option", "Type", "Default", "Meaning"], rows))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- configuration
def _format_default(value: Any) -> str:
    if value is None:
        return "unset"
    return f"`{json.dumps(value)}`"


def settings_table() -> str:
    from .config import Settings

    flags = serve_flags()
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        rows.append([f"`{name}`", f"`JINASERVE_{name.upper()}`", f"`{flags[name]}`" if name in flags else "–",
                     _format_default(default), _cell(field.description or "")])
    return _table(["Setting (TOML key)", "Environment variable", "`serve` flag", "Default", "What it does"], rows)


# --------------------------------------------------------------------------- models
def _tasks(spec) -> str:
    if not spec.tasks:
        return "–"
    return ", ".join(f"**{t}**" if t == spec.default_task else t for t in spec.task_names)


def _family_link(spec) -> str:
    page = FAMILY_PAGES.get(spec.family) or ("rerankers.md" if spec.kind == "rerank" else None)
    return f"[{spec.family}]({page})" if page else spec.family


def catalog_table() -> str:
    from .catalog import all_models

    rows = [[f"`{s.id}`", s.kind, _tasks(s), str(s.dims or "–"), str(s.max_tokens), s.params or "–",
             _cell(s.licence), "yes" if s.gguf else "–", _family_link(s)] for s in all_models()]
    return _table(["Model", "Kind", "Tasks (**default**)", "Dims", "Max tokens", "Size", "Licence", "GGUF",
                   "Family (details)"], rows)


def readme_models() -> str:
    from .catalog import all_models

    rows = [[f"`{s.id}`", s.kind, str(s.dims or "–"), str(s.max_tokens), _cell(s.licence)] for s in all_models()]
    return _table(["Model", "Kind", "Dims", "Max tokens", "Licence"], rows)


def gguf_table() -> str:
    from .catalog import all_models

    rows = []
    for s in all_models():
        if s.gguf is None:
            continue
        quants = ", ".join(f"**{q}**" if q == s.gguf.default_quant else q for q in s.gguf.files)
        extra = ", ".join(f"`{f}`" for f in s.gguf.extra_files) or "–"
        rows.append([f"`{s.id}`", f"`{s.gguf.repo}`", quants, extra])
    return _table(["Model", "GGUF repo", "Quants (**default**)", "Extra files"], rows)


# --------------------------------------------------------------------------- HTTP endpoints
def _flatten(routes: list[Any], prefix: str = "") -> list[Any]:
    """(prefix, route) for every route, also inside routers that FastAPI keeps as included sub-routers."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.165 keeps include_router() nested
        if inner is not None:
            out += _flatten(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            out.append((prefix, route))
    return out


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str  # path converters dropped: /v1/models/{model_id}
    endpoint: Any
    in_schema: bool
    summary: str


def http_routes(app: Any = None) -> list[HttpRoute]:
    """Every API route of the app (one per method), in the order they were added."""
    from fastapi.routing import APIRoute

    if app is None:
        from .api.app import create_app
        from .config import Settings

        app = create_app(Settings())  # the lifespan (model loading) is not started
    return [HttpRoute(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path), route.endpoint,
                      route.include_in_schema, route.summary or "")
            for prefix, route in _flatten(app.routes) if isinstance(route, APIRoute)
            for method in sorted(route.methods)]


def endpoints_table() -> str:
    by_endpoint: dict[Any, list[HttpRoute]] = {}
    for route in http_routes():
        by_endpoint.setdefault((route.endpoint, route.method), []).append(route)
    rows = []
    for (endpoint, method), routes in by_endpoint.items():
        main = min((r for r in routes if r.in_schema), key=lambda r: len(r.path), default=routes[0])
        also = ", ".join(f"`{r.path}`" for r in routes if r is not main) or "–"
        doc = inspect.cleandoc(endpoint.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        what = main.summary or doc or endpoint.__name__.replace("_", " ")
        rows.append([f"`{method} {main.path}`", also, _cell(what)])
    return _table(["Method and path", "Also at", "What it does"], rows)


# --------------------------------------------------------------------------- blocks and files
GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "cli": cli_reference,
    "catalog": catalog_table,
    "readme-models": readme_models,
    "gguf": gguf_table,
    "endpoints": endpoints_table,
}

# file (relative to the repository root) -> the generated blocks it holds
BLOCKS: dict[str, tuple[str, ...]] = {
    "README.md": ("readme-models",),
    "docs/configuration.md": ("settings",),
    "docs/cli.md": ("cli",),
    "docs/models/index.md": ("catalog",),
    "docs/gguf.md": ("gguf",),
    "docs/http-api.md": ("endpoints",),
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{re.escape(name)} -->\n)(.*?)(<!-- /generated:{re.escape(name)} -->)", re.S)


def render(text: str, names: tuple[str, ...], path: str = "") -> str:
    """`text` with each named block replaced by freshly generated content."""
    for name in names:
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"{path}: no <!-- generated:{name} --> ... <!-- /generated:{name} --> block")
        body = GENERATORS[name]().rstrip("\n") + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text, count=1)
    return text


def stale_blocks(root: Path = ROOT) -> list[str]:
    """`file: block` for every generated block whose committed text differs from what the code gives."""
    stale = []
    for rel, names in BLOCKS.items():
        text = (root / rel).read_text()
        for name in names:
            if render(text, (name,), rel) != text:
                stale.append(f"{rel}: {name}")
    return stale


def write_all(root: Path = ROOT) -> list[str]:
    changed = []
    for rel, names in BLOCKS.items():
        path = root / rel
        text = path.read_text()
        new = render(text, names, rel)
        if new != text:
            path.write_text(new)
            changed.append(rel)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jinaserve.docs_gen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_blocks(args.root)
        for item in stale:
            print(f"stale generated block: {item}", file=sys.stderr)
        if stale:
            print("run `make docs-gen` (python -m jinaserve.docs_gen) and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for rel in write_all(args.root):
        print(f"updated {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
