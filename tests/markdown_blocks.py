"""Reading the Markdown documentation for the tests that run or check it: code blocks, code spans, links and
the anchors mkdocs gives each heading."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from helpers import ROOT

DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```([\w-]*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class CodeBlock:
    lang: str
    title: str
    code: str


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def code_blocks(text: str) -> list[CodeBlock]:
    out = []
    for m in _FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', m.group(2))
        out.append(CodeBlock(m.group(1), title.group(1) if title else "", m.group(3)))
    return out


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose(text))


def links(text: str) -> list[str]:
    """Targets of Markdown links outside code (inline links only, which is all these pages use)."""
    return re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", prose(text)))


def anchors(path: Path) -> set[str]:
    """The ids mkdocs gives the page's headings (Python-Markdown's toc extension, as in mkdocs.yml)."""
    import markdown

    md = markdown.Markdown(extensions=["toc", "tables", "attr_list", "pymdownx.superfences"])
    md.convert(path.read_text())

    def walk(tokens: list[dict]) -> set[str]:
        return set().union(*({t["id"]} | walk(t["children"]) for t in tokens)) if tokens else set()

    return walk(md.toc_tokens)


def section(text: str, heading: str) -> str:
    """The text under the heading `heading`, up to the next heading of the same or a higher level (lines in
    fenced code blocks, such as `# comments`, are not headings)."""
    out: list[str] | None = None
    level, fenced = 0, False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"(#+) (.*?)\s*$", line)
        if out is None:
            if m and m.group(2) == heading:
                out, level = [], len(m.group(1))
            continue
        if m and len(m.group(1)) <= level:
            break
        out.append(line)
    assert out is not None, f"no heading {heading!r}"
    return "".join(out)
