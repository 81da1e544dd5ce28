"""Recognise a checkpoint folder from its own files, whatever the folder is called.

A folder is read once into `FolderFacts` (config.json, modules.json, config_sentence_transformers.json,
the file listing, and the names the folder gives itself), then matched against every catalog row's
`Detect` rules (`catalog/spec.py`). The order, documented in docs/architecture.md ("Adding a model
family"):

1. Only rows with at least one matching rule are candidates.
2. A name the folder gives itself picks among the candidates: the repo id of a Hugging Face cache
   snapshot (`models--org--name/snapshots/<sha>/`) or a catalog id in the model card's title
   (README.md). The name never overrides the files: a row whose rules do not match is never chosen.
3. Otherwise the most specific matching rule wins (the one that checks the most facts), then the
   higher `priority`.
4. Rows still tied are an error that lists them and says how to name the folder (`NAME=folder`).

A folder that matches no row but looks like a Jina model (a Jina architecture or model type, Jina
remote code in `auto_map`, task adapter folders, `lora_adaptations`/`task_names` keys, a `custom_st`
module) is an error too, never a generic loader that would compute garbage.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import CATALOG, Detect, ModelSpec, lookup
from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.detect")

_MAX_LISTED = 20_000  # files listed per folder (a model folder has tens; a wrong path may have millions)
_SKIP_DIRS = {".git", ".cache", "__pycache__", "node_modules"}
# remote-code modules published by Jina (auto_map values), and other marks of a Jina checkpoint
_JINA_CODE = ("jinaai/", "jina-bert", "xlm-roberta-flash", "modeling_lora", "modeling_jina", "jina_embeddings",
              "JinaForRanking", "JinaVLForRanking", "custom_st")
_JINA_KEYS = ("lora_adaptations", "task_instructions", "task_names", "matryoshka_dimensions",
              "multi_vector_projector_dim")
_ADAPTER_CONFIGS = ("adapters/adapter_config.json", "adapters/*/adapter_config.json", "*/adapter_config.json")


class UnrecognisedCheckpointError(ModelLoadError):
    """A folder that looks like a Jina model but matches no catalog row, or matches several equally."""


# ----------------------------------------------------------------------------------------------- facts
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _list_files(folder: Path) -> frozenset[str]:
    """Relative posix paths of the files and folders under `folder` (HF cache symlinks followed)."""
    out: set[str] = set()
    stack = [folder]
    while stack and len(out) < _MAX_LISTED:
        current = stack.pop()
        try:
            entries = list(current.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name in _SKIP_DIRS:
                continue
            out.add(entry.relative_to(folder).as_posix())
            if entry.is_dir() and len(entry.relative_to(folder).parts) < 4:
                stack.append(entry)
    return frozenset(out)


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


def read_model_card(folder: Path) -> tuple[str | None, dict[str, str]]:
    """(first `# ` heading, top-level `key: value` pairs of the YAML front matter) of README.md."""
    path = folder / "README.md"
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            text = fh.read(64_000)
    except OSError:
        return None, {}
    meta: dict[str, str] = {}
    m = _FRONT_MATTER.match(text)
    if m:
        for line in m.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep and key and not key.startswith((" ", "-", "#")) and value.strip():
                meta[key.strip()] = value.strip().strip("'\"")
        text = text[m.end():]
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    return title, meta


def cache_repo_id(folder: Path) -> str | None:
    """`org/name` when `folder` is a snapshot in the Hugging Face cache (`models--org--name/snapshots/rev`)."""
    parts = folder.resolve().parts if folder.exists() else folder.parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("models--") and i + 1 < len(parts) and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/")
    return None


def names_in(text: str) -> list[str]:
    """Catalog ids (or their aliases / repo ids) that appear as whole words in `text`, longest first."""
    found = {tok.strip(".,;:`*()[]") for tok in re.findall(r"[\w./-]+", text)}
    rows = {lookup(tok).id for tok in found if tok and lookup(tok) is not None}  # type: ignore[union-attr]
    return sorted(rows, key=len, reverse=True)


@dataclass
class FolderFacts:
    """What a checkpoint folder says about itself (read once; no weights are opened)."""

    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    modules: list[dict[str, Any]] = field(default_factory=list)
    st_config: dict[str, Any] = field(default_factory=dict)
    files: frozenset[str] = frozenset()
    card_title: str | None = None
    card: dict[str, str] = field(default_factory=dict)  # README front matter (license, base_model, ...)
    cache_repo: str | None = None

    @classmethod
    def read(cls, folder: Path) -> FolderFacts:
        folder = Path(folder)
        files = _list_files(folder)
        config_file: Path | None = folder / "config.json"
        modules = _read_json(folder / "modules.json")
        modules = modules if isinstance(modules, list) else []
        if not config_file.is_file():
            # sentence-transformers folders may keep the transformer in a sub-folder (modules.json names it)
            subs = [folder / m.get("path", "") / "config.json" for m in modules
                    if isinstance(m, dict) and str(m.get("type", "")).endswith("Transformer") and m.get("path")]
            config_file = next((p for p in subs if p.is_file()), None)
        config = _read_json(config_file) if config_file else None
        st_config = _read_json(folder / "config_sentence_transformers.json")
        title, card = read_model_card(folder)
        return cls(folder=folder, config=config if isinstance(config, dict) else {},
                   config_file=config_file if isinstance(config, dict) else None,
                   modules=[m for m in modules if isinstance(m, dict)],
                   st_config=st_config if isinstance(st_config, dict) else {}, files=files, card_title=title,
                   card=card, cache_repo=cache_repo_id(folder))

    # ------------------------------------------------------------------ look-ups
    @property
    def architectures(self) -> list[str]:
        archs = self.config.get("architectures") or []
        return [str(a) for a in archs] if isinstance(archs, list) else [str(archs)]

    @property
    def model_type(self) -> str | None:
        value = self.config.get("model_type")
        return str(value) if value is not None else None

    @property
    def auto_map(self) -> list[str]:
        amap = self.config.get("auto_map") or {}
        return [str(v) for v in (amap.values() if isinstance(amap, dict) else [amap])]

    @property
    def st_prompts(self) -> dict[str, str]:
        prompts = self.st_config.get("prompts") or {}
        return {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}

    @property
    def module_types(self) -> list[str]:
        return [str(m.get("type", "")) for m in self.modules]

    def has(self, pattern: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for name in self.files)

    def config_value(self, dotted: str) -> tuple[bool, Any]:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    @property
    def adapter_folders(self) -> list[str]:
        """Folders holding a PEFT adapter (`adapter_config.json`), e.g. `adapters/retrieval`, `text_matching`."""
        found = {name.rsplit("/", 1)[0] for name in self.files
                 if any(fnmatch.fnmatchcase(name, p) for p in _ADAPTER_CONFIGS)}
        return sorted(found)

    @property
    def hints(self) -> list[str]:
        """Catalog ids the folder names itself by: its HF cache repo id, then its model card's title."""
        out: list[str] = []
        if self.cache_repo and lookup(self.cache_repo) is not None:
            out.append(lookup(self.cache_repo).id)  # type: ignore[union-attr]
        if self.card_title:
            out.extend(names_in(self.card_title))
        return list(dict.fromkeys(out))

    @property
    def licence(self) -> str | None:
        return self.card.get("license") or self.card.get("licence")

    def jina_marks(self) -> list[str]:
        """Why this folder looks like a Jina checkpoint (empty: it does not)."""
        marks = [f"architecture {a}" for a in self.architectures if a.startswith("Jina")]
        if (self.model_type or "").startswith("jina"):
            marks.append(f"model_type {self.model_type}")
        marks += [f"auto_map {v}" for v in self.auto_map if any(s in v for s in _JINA_CODE)]
        marks += [f"config key {k}" for k in _JINA_KEYS if self.config.get(k)]
        marks += [f"module {t}" for t in self.module_types if "custom_st" in t]
        marks += [f"adapter folder {a}/" for a in self.adapter_folders]
        return marks

    def summary(self) -> str:
        """The facts an error message or `jinaserve inspect` shows."""
        parts = [f"architectures={self.architectures}", f"model_type={self.model_type!r}"]
        if self.auto_map:
            parts.append(f"auto_map={self.auto_map}")
        if self.adapter_folders:
            parts.append(f"adapter folders={self.adapter_folders}")
        if self.module_types:
            parts.append(f"modules.json={self.module_types}")
        return ", ".join(parts)


# ----------------------------------------------------------------------------------------------- matching
def rule_matches(rule: Detect, facts: FolderFacts) -> bool:
    if rule.specificity == 0:
        return False
    if rule.architectures and not set(rule.architectures) & set(facts.architectures):
        return False
    if rule.model_type and facts.model_type not in rule.model_type:
        return False
    if rule.auto_map and not any(s in v for s in rule.auto_map for v in facts.auto_map):
        return False
    if any(not facts.config.get(k) for k in rule.config_keys):
        return False
    for key, expected in rule.config.items():
        present, value = facts.config_value(key)
        if not present or not _config_holds(value, expected):
            return False
    if not all(facts.has(p) for p in rule.files) or any(facts.has(p) for p in rule.no_files):
        return False
    if rule.st_modules and not any(s in t for s in rule.st_modules for t in facts.module_types):
        return False
    prompts = facts.st_prompts
    return all(prompts.get(name) == text for name, text in rule.st_prompts.items())


def _config_holds(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):  # one of these values
        return any(_config_holds(value, e) for e in expected)
    return value == expected or (isinstance(value, list) and expected in value)


@dataclass
class Match:
    row: ModelSpec
    rule: Detect
    how: str  # "rule" or "name <hint>"

    @property
    def layout(self) -> str:
        return self.rule.layout or self.row.family


def best_rule(row: ModelSpec, facts: FolderFacts) -> Detect | None:
    matching = [r for r in row.detect_rules if rule_matches(r, facts)]
    return max(matching, key=lambda r: (r.specificity, r.priority)) if matching else None


def recognise(facts: FolderFacts, rows: Iterable[ModelSpec] | None = None) -> Match | None:
    """The row whose rules match the folder (see the module docstring for the order); None when no row
    matches. Raises `UnrecognisedCheckpointError` when rows tie."""
    matches = [(row, rule) for row in (rows if rows is not None else CATALOG.values())
               if (rule := best_rule(row, facts)) is not None]
    if not matches:
        return None
    by_id = {row.id: (row, rule) for row, rule in matches}
    for hint in facts.hints:
        if hint in by_id:
            row, rule = by_id[hint]
            return Match(row, rule, f"name {hint}")
    top = max((rule.specificity, rule.priority) for _, rule in matches)
    best = [(row, rule) for row, rule in matches if (rule.specificity, rule.priority) == top]
    if len(best) == 1:
        return Match(best[0][0], best[0][1], "rule")
    ids = [row.id for row, _ in best]
    layout = best[0][1].layout or best[0][0].family
    raise UnrecognisedCheckpointError(
        f"{facts.folder} matches {len(ids)} catalog models equally ({layout}: {', '.join(ids)}) and its files do "
        f"not say which one it is ({facts.summary()}). Serve it under the right name: --models "
        f"{ids[0]}={facts.folder} (one of {', '.join(ids)}); `jinaserve inspect {facts.folder}` shows what was "
        f"found.")


def unrecognised_jina_error(facts: FolderFacts) -> UnrecognisedCheckpointError:
    marks = facts.jina_marks()
    return UnrecognisedCheckpointError(
        f"{facts.folder} looks like a Jina model ({'; '.join(marks[:4])}) but matches no catalog row, so no "
        f"loader knows how to run it correctly. Found: {facts.summary()}. If it is a catalog model (`jinaserve "
        f"models`), serve it under that name: --models NAME={facts.folder} (e.g. jina-embeddings-v3="
        f"{facts.folder}); `jinaserve inspect {facts.folder}` shows what was found.")


# ----------------------------------------------------------------------------------------------- GGUF files
_QUANT_SUFFIX = re.compile(r"[-_.](?:[A-Za-z]*\d[A-Za-z0-9_]*)$")  # -F16, -Q8_0, -BF16, -IQ4_XS, -Q4_K_M


def _gguf_row(name: str) -> ModelSpec | None:
    name = name.removesuffix("-GGUF").removesuffix("-gguf")
    row = lookup(name)
    if row is None:  # a repo id of a row's GGUF repo (jinaai/jina-reranker-v3-GGUF)
        row = next((r for r in CATALOG.values() if r.gguf and r.gguf.repo.lower() in (name.lower(),
                                                                                      f"{name}-gguf".lower())), None)
    return row if row is not None and row.gguf is not None else None


def recognise_gguf(files: Iterable[Path], folder: Path) -> ModelSpec | None:
    """The catalog row of GGUF files from the names they are published under: the file name
    (`<repo name without -GGUF>-<QUANT>.gguf`) or the HF cache repo (`models--jinaai--<name>-GGUF`)."""
    names = [f.stem for f in files if not f.name.startswith("lora-") and "-lora-" not in f.name]
    candidates = [c for n in names for c in (n, _QUANT_SUFFIX.sub("", n))]
    repo = cache_repo_id(folder)
    if repo:
        candidates += [repo, repo.split("/", 1)[-1]]
    for name in candidates:
        row = _gguf_row(name)
        if row is not None:
            log.info("recognised the GGUF files in %s as %s (from the name %s)", folder, row.id, name)
            return row
    return None
