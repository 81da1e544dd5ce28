"""README.md is a landing page a newcomer reads in five minutes, and what it shows is what happens.

- At most 300 lines.
- Its two commands are targets of the Makefile (`make -n` resolves them).
- Its first requests (the curl commands, run as written against a real server on the offline fallback model)
  answer what the README shows under them; `...` in the shown output stands for any run of JSON tokens, numbers
  match within 1e-4.
- Its Python snippets run and print what their `# comments` say.
Links (to docs/ pages and their headings) are checked with every page in test_docs_reference.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess

import pytest

from helpers import ROOT
from markdown_blocks import code_blocks, section

README = (ROOT / "README.md").read_text()
MAX_LINES = 300
NUMBER_TOL = 1e-4


def test_short_enough():
    lines = README.count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines: keep it a landing page (≤ {MAX_LINES})"


def test_the_two_commands_are_make_targets():
    block = next(b for b in code_blocks(section(README, "Quick start")) if b.lang == "bash")
    commands = [line.split("#")[0].strip() for line in block.code.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    for target in ("run", "test"):
        proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    # `make test` builds the docs strictly, then runs pytest
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert dry.index("mkdocs build --strict") < dry.index("-m pytest")


# --------------------------------------------------------------------------- first requests
_TOKEN = re.compile(r'\.\.\.|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}\[\]:,]')


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _same(expected: str, got: str) -> bool:
    if expected == got:
        return True
    try:
        return abs(float(expected) - float(got)) <= NUMBER_TOL and not expected.startswith('"')
    except ValueError:
        return False


def abbreviation_of(expected: str, actual: str) -> bool:
    """True when `expected`, with each `...` standing for any run of tokens, matches `actual` token by token."""
    e, a = tokens(expected), tokens(actual)
    # reach[j]: the first i tokens of e can match the first j tokens of a
    reach = [True] + [False] * len(a)
    for tok in e:
        if tok == "...":
            for j in range(1, len(a) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and _same(tok, a[j]) for j in range(len(a))]
    return reach[len(a)]


def test_the_matcher_can_fail():
    assert abbreviation_of('{"a":[1.0,...],"b":2}', '{"a":[1.00001,2,3],"b":2}')
    assert not abbreviation_of('{"a":[1.0,...],"b":2}', '{"a":[1.1,2,3],"b":2}')
    assert not abbreviation_of('{"a":1}', '{"a":1,"b":2}')


def shell_examples(text: str) -> list[tuple[str, str]]:
    """(command, the output shown in the `#` comment lines right under it) for each example of a bash block."""
    out = []
    for block in code_blocks(text):
        if block.lang != "bash":
            continue
        command: list[str] = []
        shown: list[str] = []
        for line in [*block.code.splitlines(), ""]:
            if line.startswith("#"):
                shown.append(line.lstrip("#").strip())
            elif shown or (not line.strip() and command):
                out.append(("\n".join(command), " ".join(shown)))
                command, shown = ([line] if line.strip() else []), []
            elif line.strip():
                command.append(line)
    return out


def test_first_requests_answer_what_the_readme_shows(docs_server):
    examples = shell_examples(section(README, "First requests"))
    assert len(examples) == 2 and all(cmd.startswith("curl") and shown for cmd, shown in examples)
    for command, shown in examples:
        run = command.replace("localhost:8080", f"127.0.0.1:{docs_server.port}")
        proc = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert abbreviation_of(shown, proc.stdout), f"README shows\n{shown}\nthe server answered\n{proc.stdout[:600]}"


# --------------------------------------------------------------------------- Python snippets
def printed_comments(code: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+# (.+)$", code, re.M)]


@pytest.mark.parametrize("index", [0, 1])
def test_python_snippets_print_what_they_say(docs_server, index):
    blocks = [b for b in code_blocks(section(README, "First requests")) if b.lang == "python"]
    assert len(blocks) == 2
    code = blocks[index].code.replace("http://127.0.0.1:8080", docs_server.url)
    expected = printed_comments(code)
    assert expected, "each snippet shows its output in a comment"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().splitlines() == expected
