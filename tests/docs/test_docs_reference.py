"""The documentation (README.md and docs/) stays true to the code.

- The generated reference tables (settings, CLI, catalog, GGUF files, endpoints) are what the code gives now.
- Every setting, `serve` flag, command and catalog row is documented; every `JINASERVE_*` variable, command,
  flag, endpoint, error code, metric and repository path the pages name exists.
- Every relative link resolves to a file, and every `#anchor` to a heading of that page.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import ROOT
from jinaserve import docs_gen
from jinaserve.catalog import all_models
from jinaserve.config import Settings
from markdown_blocks import DOCS, anchors, code_blocks, code_spans, links, pages, prose

PAGES = {p: p.read_text() for p in pages()}
# Pages that describe other software (the hosted API, llama.cpp's tools): what they name is not ours.
FOREIGN = {DOCS / "reference" / "hosted-api.md"}
OURS = {p: t for p, t in PAGES.items() if p not in FOREIGN}


def read(rel: str) -> str:
    return (ROOT / rel).read_text()


# --------------------------------------------------------------------------- generated tables
def test_generated_blocks_are_current():
    stale = docs_gen.stale_blocks()
    assert not stale, f"stale generated blocks {stale}: run `make docs-gen` and commit the result"


def test_a_stale_block_is_detected():
    text = read("docs/configuration.md")
    edited = text.replace("| `port` |", "| `port_renamed` |", 1)
    assert edited != text
    assert docs_gen.render(edited, ("settings",)) == text  # regeneration restores the committed page


# --------------------------------------------------------------------------- settings and variables
def test_configuration_page_lists_every_setting():
    table = read("docs/configuration.md")
    for name, field in Settings.model_fields.items():
        assert f"| `{name}` | `JINASERVE_{name.upper()}` |" in table, name
        assert field.description, f"setting {name} has no description= (the reference is generated from it)"


def test_every_env_var_named_exists():
    used = ""
    for folder in ("src", "docker", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ".yaml", ".yml", ""}:
                used += path.read_text(errors="ignore")
    for name in ("docker-compose.yml", ".env.example", "Makefile", "Dockerfile", "Dockerfile.cuda"):
        if (ROOT / name).is_file():
            used += read(name)
    settings = {f"JINASERVE_{n.upper()}" for n in Settings.model_fields}
    for path, text in PAGES.items():
        named = set(re.findall(r"JINASERVE_[A-Z0-9_]+", text))
        unknown = sorted(v for v in named if v not in settings and v not in used)
        assert not unknown, f"{path.relative_to(ROOT)} names {unknown}"


def _sample(setting: str):
    """A valid value for a setting, to pass through its flag."""
    annotation = Settings.model_fields[setting].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return args[-1]
    if setting == "models":
        return "all-MiniLM-L6-v2"
    types = set(args) or {annotation}
    return True if bool in types else 7 if int in types else "x"


def test_serve_flags_set_the_settings_the_configuration_page_says(monkeypatch):
    """The `serve flag` column of the settings table, checked by running `jinaserve serve FLAG VALUE` (the
    server start is replaced by capturing the settings it would start with)."""
    import jinaserve.server
    from jinaserve.cli import app

    captured = {}
    monkeypatch.setattr(jinaserve.server, "serve", lambda settings: captured.update(settings=settings))
    flags = docs_gen.serve_flags()
    assert {"models", "host", "port", "api_keys", "gguf_ctx_size", "offline"} <= set(flags)
    for setting, flag in flags.items():
        if setting == "bundle":
            continue  # needs a real bundle folder: tests/ops/test_bundle.py serves one
        value = _sample(setting)
        option = flag.split(",")[0].split(" ")[0]
        args = ["serve", option] if value is True else ["serve", option, str(value)]
        result = CliRunner().invoke(app, args, env={"JINASERVE_CONFIG": ""})
        assert result.exit_code == 0, (args, result.output)
        got = getattr(captured.pop("settings"), setting)
        assert got == ([value] if isinstance(got, list) else value), (setting, flag, got)


# --------------------------------------------------------------------------- command line
def _commands() -> dict[str, set[str]]:
    return {name: {o for p in cmd.params if p.param_type_name == "option"
                   for o in (*p.opts, *getattr(p, "secondary_opts", []))} | {"--help"}
            for name, cmd in docs_gen.cli_commands().items()}


def test_cli_page_documents_every_command_and_flag():
    text = read("docs/cli.md")
    for name, options in _commands().items():
        assert f"### `jinaserve {name}`" in text, name
        for option in options - {"--help"}:
            assert f"`{option}" in text or f", {option}" in text or f"/ {option}" in text, (name, option)


def _invocations(text: str) -> list[str]:
    """Every `jinaserve ...` command line the page shows (code blocks, with continuation lines, and spans)."""
    lines = []
    for block in code_blocks(text):
        if block.lang not in ("bash", "sh", "shell", "console", ""):
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            lines += re.findall(r"(?:^|[\s;&|(])(?:\.venv/bin/)?(jinaserve [^#|;&)]*)", line)
    lines += [s for s in code_spans(text) if re.match(r"(?:\.venv/bin/)?jinaserve [a-z]", s)]
    return lines


def test_every_command_and_flag_named_exists():
    commands = _commands()
    every_flag = set().union(*commands.values())
    for path, text in OURS.items():
        for line in _invocations(text):
            words = line.replace(".venv/bin/", "").split()
            if len(words) < 2 or not re.fullmatch(r"[a-z]+", words[1]):
                continue
            if len(words) > 2 and f"{words[1]} {words[2]}" in commands:  # a sub-app's command: `batch run`
                words = [words[0], f"{words[1]} {words[2]}", *words[3:]]
            groups = {name.split(" ")[0] for name in commands if " " in name}
            if words[1] in groups and len(words) == 2:  # the sub-app itself (`jinaserve batch`)
                continue
            assert words[1] in commands, f"{path.relative_to(ROOT)}: unknown command in {line!r}"
            flags = {w.split("=")[0] for w in words[2:] if re.fullmatch(r"--?[a-z][a-z0-9-]*(=.*)?", w)}
            assert flags <= commands[words[1]], f"{path.relative_to(ROOT)}: {flags - commands[words[1]]} in {line!r}"
        # a flag on its own in prose (`--max-batch-tokens`) must be some command's flag
        for span in code_spans(text):
            m = re.fullmatch(r"(--[a-z][a-z0-9-]*)(?: [A-Za-z0-9_.]+)?", span)
            if m:
                assert m.group(1) in every_flag, f"{path.relative_to(ROOT)}: unknown flag {span!r}"


# --------------------------------------------------------------------------- HTTP
def test_every_endpoint_named_exists():
    routes = {(r.method, r.path) for r in docs_gen.http_routes()}
    assert ("POST", "/v1/embeddings") in routes and len(routes) >= 10
    paths = {p for _, p in routes}

    def known(path: str) -> bool:
        return re.sub(r"\{\w+\}", "{}", path) in {re.sub(r"\{\w+\}", "{}", p) for p in paths}

    for path, text in OURS.items():
        for method, route in re.findall(r"\b(GET|POST|PUT|DELETE|PATCH) (/[A-Za-z0-9/{}_.-]*)", text):
            shape = re.sub(r"\{\w+\}", "{}", route)  # `{id}` in prose names the route's `{batch_id}`
            assert any(m == method and re.sub(r"\{\w+\}", "{}", r) == shape for m, r in routes) \
                or route in ("/docs", "/redoc", "/openapi.json"), \
                f"{path.relative_to(ROOT)}: {method} {route} is not served"
        for span in code_spans(text):
            if re.fullmatch(r"/v1/[a-z0-9/{}_-]+", span):
                assert known(span), f"{path.relative_to(ROOT)}: {span} is not served"


def test_fastapi_docs_routes_exist_and_are_named():
    from jinaserve.api.app import create_app

    served = {getattr(r, "path", None) for r in create_app(Settings()).routes}
    text = read("docs/http-api.md")
    for route in ("/docs", "/redoc", "/openapi.json"):
        assert route in served and f"`GET {route}`" in text, route


def test_every_error_code_named_exists():
    source = "".join(p.read_text() for p in (ROOT / "src" / "jinaserve").rglob("*.py"))
    for path, text in OURS.items():
        for span in code_spans(text):
            for code in re.findall(r"\b(?:INPUT|AUTH|RATE|SERVICE|RESOURCE|METHOD|INTERNAL)_[A-Z_]+\b", span):
                assert f'"{code}"' in source, f"{path.relative_to(ROOT)}: error code {code} is not in src/"


def test_every_metric_named_exists():
    from jinaserve import metrics

    names = {m.name for m in metrics.REGISTRY.collect()}
    names |= {n.removesuffix("_total") for n in names}
    for path, text in OURS.items():
        for name in set(re.findall(r"\bjinaserve_[a-z_]+", prose(text))):
            assert name in names or name.removesuffix("_total") in names, \
                f"{path.relative_to(ROOT)}: metric {name} is not registered"


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("spec", all_models(), ids=lambda s: s.id)
def test_every_catalog_row_is_listed(spec):
    for rel in ("docs/models/index.md", "README.md"):
        assert f"| `{spec.id}` | {spec.kind} |" in read(rel), rel


# --------------------------------------------------------------------------- links and paths
@pytest.mark.parametrize("page", list(PAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(page: Path):
    own = anchors(page)
    for target in links(PAGES[page]):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.is_file(), f"{page.relative_to(ROOT)}: link to missing file {target}"
        if anchor:
            assert anchor in (own if dest == page else anchors(dest)), \
                f"{page.relative_to(ROOT)}: no heading for #{anchor} in {dest.relative_to(ROOT)}"


TOP = ("src/", "tests/", "benchmarks/", "deploy/", "docker/", "examples/", "docs/", ".ci/")


@pytest.mark.parametrize("page", list(OURS), ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_named_exist(page: Path):
    """A path of this repository in a code span (`src/jinaserve/models/jina_v4.py`) names a real file or folder."""
    for span in code_spans(OURS[page]):
        path = span.split(" ")[0].split("::")[0].rstrip(".,:")
        if path.startswith(TOP) and not re.search(r"[<>*{}]|\.\.\.", path):
            assert (ROOT / path).exists(), f"{page.relative_to(ROOT)}: {path} does not exist"
