"""The package's import arrows point down (api → engine → models → runtimes → outputs/catalog), checked on
every import statement of every module, module-level or inside a function (a lazy import is still a
dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import jinaserve

PKG = Path(jinaserve.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module → the jinaserve modules it imports (packages resolved to their module or package name)."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("jinaserve"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if not mod.startswith("jinaserve"):
                    continue
                targets.add(mod)
                targets.update(f"{mod}.{a.name}" for a in node.names)  # `from . import hub` names a module
        graph[name] = targets
    known = set(graph)
    return {m: {t for t in ts if t in known} for m, ts in graph.items()}


def _layer_imports(graph: dict[str, set[str]], lower: str, upper: str) -> list[str]:
    return sorted(f"{m} → {t}" for m, ts in graph.items() if m.startswith(lower) for t in ts
                  if t == upper or t.startswith(upper + "."))


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "jinaserve.engine.service" in graph["jinaserve.engine.registry"]  # `from .service import ...`
    assert "jinaserve.server" in graph["jinaserve.cli"]  # imported inside a function


def test_runtimes_import_nothing_from_models_engine_or_api():
    graph = import_graph()
    for upper in ("jinaserve.models", "jinaserve.engine", "jinaserve.api"):
        assert _layer_imports(graph, "jinaserve.runtimes", upper) == []


def test_models_import_nothing_from_engine_or_api_and_engine_nothing_from_api():
    graph = import_graph()
    for upper in ("jinaserve.engine", "jinaserve.api"):
        assert _layer_imports(graph, "jinaserve.models", upper) == []
    assert _layer_imports(graph, "jinaserve.engine", "jinaserve.api") == []


def test_cli_and_ray_serve_do_not_import_each_other_in_a_circle():
    graph = import_graph()
    assert "jinaserve.ray_serve" in graph["jinaserve.cli"]  # `serve --ray`
    assert "jinaserve.cli" not in graph["jinaserve.ray_serve"]
    # and no other circle through the CLI
    seen, stack = set(), ["jinaserve.ray_serve"]
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        stack.extend(graph.get(m, ()))
    assert "jinaserve.cli" not in seen
