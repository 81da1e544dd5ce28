"""The README's foundation sections stay true: every setting, flag, endpoint and catalog row they name exists,
and every JINASERVE_* variable the README names anywhere is used somewhere in the project."""

from __future__ import annotations

import re

import pytest
import typer

from helpers import ROOT
from jinaserve.catalog import all_models
from jinaserve.cli import app as cli_app
from jinaserve.config import Settings

README = (ROOT / "README.md").read_text()


def section(name: str) -> str:
    m = re.search(rf"<!-- section:{re.escape(name)} -->(.*?)<!-- /section:{re.escape(name)} -->", README, re.S)
    assert m, f"README has no section {name}"
    assert m.group(1).strip(), f"README section {name} is empty"
    return m.group(1)


def test_config_section_lists_every_setting():
    text = section("config")
    for name in Settings.model_fields:
        assert f"`JINASERVE_{name.upper()}`" in text, name
        assert f"| `{name}` |" in text, name


def test_every_env_var_named_in_the_readme_exists():
    used = ""
    for folder in ("src", "docker", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ".yaml", ".yml", ""}:
                used += path.read_text(errors="ignore")
    for name in ("docker-compose.yml", ".env.example", "Makefile", "Dockerfile", "Dockerfile.cuda"):
        if (ROOT / name).is_file():
            used += (ROOT / name).read_text(errors="ignore")
    settings = {f"JINASERVE_{n.upper()}" for n in Settings.model_fields}
    named = set(re.findall(r"JINASERVE_[A-Z0-9_]+", README))
    unknown = sorted(v for v in named if v not in settings and v not in used)
    assert not unknown, unknown


def _cli_options() -> dict[str, set[str]]:
    group = typer.main.get_command(cli_app)
    out: dict[str, set[str]] = {}
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out[name] = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    return out


def test_cli_section_names_real_commands_and_flags():
    text = section("cli")
    options = _cli_options()
    commands = set(re.findall(r"`jinaserve ([a-z]+)", text))
    assert commands and commands <= set(options), commands - set(options)
    assert set(options) <= commands, f"undocumented commands: {set(options) - commands}"
    every = set().union(*options.values()) | {"--help"}
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", text)) - {"-d"}
    assert not flags - every, flags - every
    assert options["serve"] - {"--help"} <= flags, f"undocumented serve flags: {options['serve'] - flags}"


def test_http_section_endpoints_exist():
    from jinaserve.api.app import create_app
    from jinaserve.api.routes import router

    app = create_app(Settings())  # models load in the lifespan, which is not started here
    paths = [r.path for r in (*app.routes, *router.routes) if hasattr(r, "path")]
    routes = {re.sub(r"\{(\w+)(:path)?\}", "{}", p) for p in paths}
    text = section("http-api")
    table = [ln for ln in text.splitlines() if re.match(r"\| `(GET|POST) ", ln)]
    assert len(table) >= 8
    for line in table:
        for path in re.findall(r"`(?:GET |POST )?(/[a-z0-9/{}_-]*)`", line):
            assert re.sub(r"\{\w+\}", "{}", path) in routes, path
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert path in routes and path in text


@pytest.mark.parametrize("spec", all_models(), ids=lambda s: s.id)
def test_models_section_has_every_catalog_row(spec):
    assert f"| `{spec.id}` | {spec.kind} |" in section("models")


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", ["quickstart", "models", "http-api", "cli", "config", "inprocess", "testing"])
def test_section_links_point_at_headings(name):
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", README, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", section(name))
    missing = sorted(set(links) - anchors)
    assert not missing, missing
