"""Where weights come from: local folders, the Hugging Face cache, the hub, or bundled packages."""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
    """The snapshot folder of `repo` in the Hugging Face cache (`models--org--name/snapshots/<commit>`, the
    commit read from `refs/<revision>`), else None. Only the files jinaserve downloaded are there (not the
    whole repo), so completeness is not judged against the repo listing; with `allow_patterns`, each
    pattern must match a cached file."""
    from huggingface_hub import constants

    root = Path(cache_dir).expanduser() if cache_dir else Path(constants.HF_HUB_CACHE)
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    rev = revision or "main"
    ref = repo_dir / "refs" / rev
    try:
        commit = ref.read_text().strip() if ref.is_file() else rev
    except OSError:
        return None
    folder = repo_dir / "snapshots" / commit
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    if allow_patterns:  # a cached snapshot of the repo is not enough: each requested pattern must be there
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        if not all(any(fnmatch.fnmatch(n, pat) for n in names) for pat in allow_patterns):
            return None
    return folder


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (used to decide the offline fallback). An error answer counts
    as unreachable: a proxy that refuses (403, 407) or a hub that is down (5xx) cannot serve downloads."""
    import httpx

    try:
        r = httpx.head(hub_endpoint(), timeout=timeout_s, follow_redirects=True)
    except Exception as exc:
        log.debug("hub %s unreachable: %s", hub_endpoint(), exc)
        return False
    if r.status_code >= 400:
        log.debug("hub %s answered HTTP %d: treated as unreachable", hub_endpoint(), r.status_code)
        return False
    return True


# --------------------------------------------------------------------------- downloads that say what they do
@dataclass
class DownloadPlan:
    """The files of `repo` to download (chosen from the repo listing), their total size and the licence."""

    repo: str
    revision: str | None
    files: list[str]
    total_bytes: int
    licence: str | None = None  # from the repo's model card metadata
    skipped: int = 0  # files of the repo not needed (other formats, code, ...)


def plan_download(repo: str, revision: str | None, select: Callable[[list[str]], list[str]] | None = None,
                  endpoint: str | None = None, timeout_s: float = 30.0) -> DownloadPlan:
    """List `repo` on the hub (file names and sizes, model card licence) and choose the files to fetch."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint or hub_endpoint()).model_info(repo, revision=revision, files_metadata=True,
                                                                timeout=timeout_s)
    sizes: dict[str, int] = {}
    for sib in info.siblings or []:
        lfs_size = getattr(sib.lfs, "size", None) if sib.lfs is not None else None
        sizes[sib.rfilename] = int(lfs_size if lfs_size is not None else (sib.size or 0))
    names = sorted(sizes)
    chosen = select(names) if select is not None else names
    card = info.card_data
    licence = getattr(card, "license", None) if card is not None else None
    if isinstance(licence, list):
        licence = ", ".join(map(str, licence))
    return DownloadPlan(repo, revision, chosen, sum(sizes[n] for n in chosen), licence, len(names) - len(chosen))


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def plan_line(plan: DownloadPlan, model: str | None = None, catalog_licence: str | None = None) -> str:
    """The one line said before a download: model, size, licence (and a non-commercial notice)."""
    from ..catalog.licences import is_non_commercial

    licence = catalog_licence if catalog_licence not in (None, "", "unknown") else plan.licence
    if plan.licence and licence and plan.licence.lower() not in licence.lower():
        licence = f"{licence} (model card: {plan.licence})"
    note = " (non-commercial use only)" if is_non_commercial(licence) else ""
    who = f"{model} ({plan.repo})" if model and model != plan.repo else plan.repo
    n, k = len(plan.files), plan.skipped
    skipped = f"; {k} file{'s' * (k != 1)} not needed {'are' if k != 1 else 'is'} skipped" if k else ""
    return (f"downloading {who}: {n} file{'s' * (n != 1)}, {human_bytes(plan.total_bytes)}, licence "
            f"{licence or 'unknown'}{note}{skipped}")


def progress_enabled(quiet: bool = False) -> bool:
    """Progress bars only for a person watching: not with --quiet, not when stderr is no terminal."""
    if quiet or os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in {"1", "true", "yes"}:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _say(line: str) -> None:
    """Log the line; when nothing shows jinaserve's logs (the in-process API in a terminal), print it too."""
    log.info("%s", line)
    if not logging.getLogger("jinaserve").hasHandlers() and progress_enabled():
        print(line, file=sys.stderr, flush=True)


def fetch(repo: str, *, revision: str | None = None, cache_dir: str | None = None, offline: bool = False,
          allow_patterns: list[str] | None = None, select: Callable[[list[str]], list[str]] | None = None,
          progress: bool | None = None, quiet: bool = False, model: str | None = None,
          licence: str | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Local folder for `repo`: from the cache, else downloaded (unless offline).

    Only the files `select` chooses from the repo listing are downloaded (or those matching
    `allow_patterns`); one line with the model, the download size and the licence is said first.
    Progress bars: `progress` (None = on when stderr is a terminal, unless `quiet`)."""
    cached = cached_snapshot(repo, revision, cache_dir, allow_patterns)
    if cached is not None:
        return cached
    if offline_mode(offline):
        raise WeightsUnavailableError(
            f"{repo} is not in the local cache and offline mode is on; run `jinaserve pull {repo}` on a "
            f"connected machine or point --models at a local folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if select is None and allow_patterns:
        patterns = list(allow_patterns)

        def select(names: list[str]) -> list[str]:
            return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    try:
        plan = plan_download(repo, revision, select)
    except Exception as exc:
        raise WeightsUnavailableError(f"could not download {repo}: listing its files on {hub_endpoint()} failed "
                                      f"({type(exc).__name__}: {exc})") from exc
    if not plan.files:
        raise WeightsUnavailableError(f"{repo} has no files jinaserve can load (weights, configs, tokenizer)"
                                      + (f" matching {allow_patterns}" if allow_patterns else ""))
    (say or _say)(plan_line(plan, model, licence))
    show = progress_enabled(quiet) if progress is None else (progress and not quiet)
    (enable_progress_bars if show else disable_progress_bars)()
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir, allow_patterns=plan.files,
                                      endpoint=hub_endpoint()))
    except Exception as exc:
        raise WeightsUnavailableError(f"could not download {repo}: {type(exc).__name__}: {exc}") from exc


def is_cached(repo: str, cache_dir: str | None = None) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache_dir)
    except Exception:
        return False
    return any(r.repo_id == repo and r.repo_type == "model" for r in info.repos)
