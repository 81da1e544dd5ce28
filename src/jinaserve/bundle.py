"""Offline bundles: the weights of a set of models plus a manifest, for air-gapped hosts.

`jinaserve bundle --models a,b --out DIR` resolves each model exactly as `serve` does (catalog id, hub
repo id, local folder or NAME=SOURCE), fetches it (from the cache, or the hub when online), copies the
folder into `DIR/models/<name>/` (symlinks of the Hugging Face cache resolved into real files) and
writes `DIR/manifest.json` with every file's size and SHA-256.

On the air-gapped host, `JINASERVE_BUNDLE=DIR` (or `serve --bundle DIR`) serves those models with
offline mode forced on: the model list comes from the manifest, the files are checked against it, and
no hub is contacted.

Layout::

    DIR/manifest.json
    DIR/models/<name>/config.json, model.safetensors, tokenizer.json, ...
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("jinaserve.bundle")

MANIFEST = "manifest.json"
FORMAT = "jinaserve-bundle"
FORMAT_VERSION = 1
_SKIP_DIRS = {".git", ".cache", "__pycache__"}


class BundleError(RuntimeError):
    """A bundle that cannot be written or does not match its manifest."""


@dataclass
class BundledModel:
    name: str  # the name the model is served under
    source: str  # what the user asked for
    catalog_id: str | None
    kind: str
    family: str
    path: str  # relative to the bundle root
    files: dict[str, dict[str, Any]]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_tree(src: Path, dst: Path) -> dict[str, dict[str, Any]]:
    """Copy `src` into `dst` following symlinks (HF cache snapshots are symlinks into blobs/)."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path.resolve(), target)
        files[rel.as_posix()] = {"size": target.stat().st_size, "sha256": _sha256(target)}
    if not files:
        raise BundleError(f"{src} holds no files")
    return files


def create_bundle(models: list[str], out: str | Path, *, offline: bool = False, cache_dir: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write the bundle for `models` into `out`; returns the manifest."""
    from . import __version__
    from .models.loading import LoadOptions
    from .models.resolve import locate, resolve

    if not models:
        raise BundleError("name at least one model to bundle (--models a,b)")
    root = Path(out).expanduser().resolve()
    if (root / MANIFEST).exists() and not overwrite:
        raise BundleError(f"{root} already holds a bundle; pass --overwrite to replace it")
    if root.exists() and any(root.iterdir()) and not (root / MANIFEST).exists():
        raise BundleError(f"{root} exists and is not empty (and is not a bundle)")
    opts = LoadOptions(offline=offline, cache_dir=cache_dir)
    entries: list[BundledModel] = []
    seen: set[str] = set()
    for arg in models:
        ref, folder = locate(resolve(arg), opts)
        name = ref.served_id
        if name in seen:
            raise BundleError(f"model name {name!r} appears twice")
        seen.add(name)
        catalog_id = None
        from .catalog import lookup

        row = lookup(ref.spec.hf_repo or "") if ref.spec.hf_repo else None
        row = row or lookup(arg.partition("=")[2] or arg)
        if row is not None:
            catalog_id = row.id
        rel = f"models/{_safe_dirname(name)}"
        dst = root / rel
        if dst.exists():
            shutil.rmtree(dst)
        log.info("bundling %s from %s", name, folder)
        files = _copy_tree(Path(folder), dst)
        entries.append(BundledModel(name=name, source=arg, catalog_id=catalog_id, kind=ref.spec.kind,
                                    family=ref.spec.family, path=rel, files=files))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "jinaserve_version": __version__,
        "models": [e.__dict__ for e in entries],
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _safe_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root).expanduser() / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} not found: not a jinaserve bundle (make one with `jinaserve bundle`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path} is not a version-{FORMAT_VERSION} jinaserve bundle manifest")
    return manifest


def verify_bundle(root: str | Path, *, hashes: bool = False) -> list[str]:
    """Problems found (empty = the bundle matches its manifest). Sizes always; SHA-256 with `hashes`."""
    root = Path(root).expanduser().resolve()
    manifest = read_manifest(root)
    problems: list[str] = []
    for model in manifest["models"]:
        base = root / model["path"]
        for rel, info in model["files"].items():
            f = base / rel
            if not f.is_file():
                problems.append(f"{model['name']}: missing {rel}")
            elif f.stat().st_size != info["size"]:
                problems.append(f"{model['name']}: {rel} has {f.stat().st_size} bytes, manifest says {info['size']}")
            elif hashes and _sha256(f) != info["sha256"]:
                problems.append(f"{model['name']}: {rel} SHA-256 differs from the manifest")
    return problems


def bundle_model_args(root: str | Path) -> tuple[list[str], dict[str, str]]:
    """`--models` arguments and request-name aliases that serve the bundle at `root`.

    A model that came from the catalog is served under its catalog id (so its catalog row, family and
    tasks apply) and answers to the bundled name too through an alias."""
    root = Path(root).expanduser().resolve()
    manifest = read_manifest(root)
    problems = verify_bundle(root)
    if problems:
        raise BundleError(f"bundle {root} does not match its manifest: " + "; ".join(problems[:5]))
    args: list[str] = []
    aliases: dict[str, str] = {}
    for model in manifest["models"]:
        folder = root / model["path"]
        served = model.get("catalog_id") or model["name"]
        args.append(f"{served}={folder}")
        if served != model["name"]:
            aliases[model["name"]] = served
    return args, aliases


def apply_bundle(settings: Any) -> Any:
    """Settings hook: with `bundle` set, force offline mode and serve the bundle's models (unless
    `models` names some explicitly)."""
    if not getattr(settings, "bundle", None):
        return settings
    args, aliases = bundle_model_args(settings.bundle)
    settings.offline = True
    if not settings.models:
        settings.models = args
    settings.model_aliases = {**aliases, **settings.model_aliases}
    return settings
