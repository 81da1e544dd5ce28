"""`input_url` on object storage: `s3://bucket/key` (extra `jinaserve[s3]`, s3fs) and `gs://bucket/key`
(extra `jinaserve[gcs]`, gcsfs), read through fsspec with the server's own cloud credentials.

Off unless `batch_allow_object_store` is set: any caller who may create a job could otherwise read every object
the server's credentials can (the object-store form of SSRF). The credentials and endpoint come from each
library's usual sources — for S3 the AWS environment variables / config files / instance role, including
`AWS_ENDPOINT_URL` for S3-compatible stores (MinIO, Ceph); for GCS `GOOGLE_APPLICATION_CREDENTIALS` or the
metadata server. The same byte and time limits as an http(s) `input_url` apply.
"""

from __future__ import annotations

import importlib.util
import time
from typing import IO
from urllib.parse import urlsplit

from ..netguard import URLRefusedError

# scheme → (module the fsspec protocol needs, jinaserve extra that installs it)
SCHEMES = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}
CHUNK = 1 << 20


def is_object_url(url: str) -> bool:
    return url.split(":", 1)[0].lower() in SCHEMES and "://" in url


def check_object_url(url: str, *, what: str, allowed: bool) -> None:
    """Refuse (URLRefusedError, a 400) an object-store URL that is off, lacks its library, or names no object."""
    scheme = url.split(":", 1)[0].lower()
    module, extra = SCHEMES[scheme]
    if not allowed:
        raise URLRefusedError(f"{what}: {scheme}:// URLs are read with the server's own cloud credentials and are "
                              "off on this server; set batch_allow_object_store=true (JINASERVE_BATCH_ALLOW_"
                              "OBJECT_STORE=1) to allow them, or give a pre-signed https URL of the object")
    if importlib.util.find_spec(module) is None:
        raise URLRefusedError(f"{what}: reading {scheme}:// URLs needs {module} on the server: "
                              f"pip install 'jinaserve[{extra}]' and restart")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise URLRefusedError(f"{what}: {url[:80]!r} is not a valid URL") from None
    if not parts.netloc or parts.path.strip("/") == "":
        raise URLRefusedError(f"{what}: {url[:80]!r} names no object; use {scheme}://BUCKET/KEY")


def fetch_object(url: str, *, what: str, sink: IO[bytes], max_bytes: int, total_timeout_s: float = 600.0) -> int:
    """Copy the object at `url` into `sink` (at most `max_bytes`, within `total_timeout_s`); returns its size.
    Every failure is a URLRefusedError whose message names the URL and the cause."""
    import fsspec

    deadline = time.monotonic() + total_timeout_s
    short = url[:200]
    try:
        fs, path = fsspec.core.url_to_fs(url)
        size = fs.size(path)
        if size is not None and size > max_bytes:
            raise URLRefusedError(f"{what}: {short} is {size} bytes, over the {max_bytes} byte limit "
                                  "(batch_max_input_bytes)")
        copied = 0
        with fs.open(path, "rb", block_size=CHUNK) as f:
            while chunk := f.read(CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise URLRefusedError(f"{what}: {short} is over the {max_bytes} byte limit "
                                          "(batch_max_input_bytes)")
                if time.monotonic() > deadline:
                    raise URLRefusedError(f"{what}: reading {short} took longer than {total_timeout_s:g} s")
                sink.write(chunk)
        return copied
    except URLRefusedError:
        raise
    except FileNotFoundError:
        raise URLRefusedError(f"{what}: {short} does not exist (or the bucket is not visible to the server's "
                              "credentials)") from None
    except PermissionError as exc:
        raise URLRefusedError(f"{what}: the server's credentials may not read {short} ({exc})") from None
    except Exception as exc:  # the storage library's own errors (network, auth, config): one clear line
        raise URLRefusedError(f"{what}: reading {short} failed ({type(exc).__name__}: {str(exc)[:300]})") from None


__all__ = ["SCHEMES", "check_object_url", "fetch_object", "is_object_url"]
