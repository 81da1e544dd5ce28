"""Where weights come from: local folders, the Hugging Face cache, the hub, or bundled packages."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.hub")


class WeightsUnavailableError(ModelLoadError, RuntimeError):
    """A model's files are neither local nor downloadable (typed: 503 MODEL_LOAD_FAILED, clean CLI error)."""


def bundled_folder(ref: str) -> Path | None:
    """Resolve 'python_package:subfolder' to a folder inside an installed package, if installed."""
    package, _, sub = ref.partition(":")
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    base = Path(module.__file__).parent  # type: ignore[arg-type]
    folder = base / sub if sub else base
    return folder if folder.is_dir() else None


def offline_mode(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def cached_snapshot(repo: str, revision: str | None = None, cache_dir: str | None = None,
                    allow_patterns: list[str] | None = None) -> Path | None:
    """The local snapshot folder of `repo` if it is fully in the HF cache, else None."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir, local_files_only=True,
                                        allow_patterns=allow_patterns))
    except Exception:
        return None
    if allow_patterns:  # a cached snapshot of the repo is not enough: each requested pattern must be there
        import fnmatch

        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        if not all(any(fnmatch.fnmatch(n, pat) for n in names) for pat in allow_patterns):
            return None
    return folder


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick check that the Hugging Face hub answers (used to decide the offline fallback)."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=timeout_s, follow_redirects=False)
        return True
    except Exception:
        return False


def fetch(repo: str, *, revision: str | None = None, cache_dir: str | None = None, offline: bool = False,
          allow_patterns: list[str] | None = None, progress: bool = False) -> Path:
    """Local folder for `repo`: from the cache, else downloaded (unless offline)."""
    cached = cached_snapshot(repo, revision, cache_dir, allow_patterns)
    if cached is not None:
        return cached
    if offline_mode(offline):
        raise WeightsUnavailableError(
            f"{repo} is not in the local cache and offline mode is on; run `jinaserve pull {repo}` on a "
            f"connected machine or point --models at a local folder")
    from huggingface_hub import snapshot_download

    log.info("downloading %s%s", repo, f"@{revision}" if revision else "")
    kwargs = {}
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir,
                                      allow_patterns=allow_patterns, **kwargs))
    except Exception as exc:
        raise WeightsUnavailableError(f"could not download {repo}: {type(exc).__name__}: {exc}") from exc


def is_cached(repo: str, cache_dir: str | None = None) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache_dir)
    except Exception:
        return False
    return any(r.repo_id == repo and r.repo_type == "model" for r in info.repos)
