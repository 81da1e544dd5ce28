"""Image sources → decoded RGB Pillow images, for multimodal families (jina-embeddings-v4, rerankers).

Accepted sources (one per request input):

* an ``http(s)://`` URL, fetched with bounded timeouts, a byte cap enforced while streaming, a
  content-type check, a limited number of redirects, and an SSRF guard that refuses private, loopback,
  link-local, multicast and reserved addresses (each redirect hop is checked again, and the connection
  goes to the address that was checked, so DNS cannot swap it afterwards) unless the operator allows them;
* a ``data:image/...;base64,`` URI or a raw base64 string;
* raw ``bytes`` (in-process API);
* a local file path or ``pathlib.Path`` and a ``PIL.Image.Image`` (in-process API only; an HTTP
  request can never make the server read its own files).

Every failure raises :class:`InvalidImageError` (HTTP 400) whose message names the input index.

    from jinaserve.images import ImageFetchPolicy, load_image, load_images
    img = load_image("https://example.com/cat.png", policy=ImageFetchPolicy(), index=0)

Pillow is imported lazily (the ``vision`` extra), so importing this module is cheap.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = [
    "ImageFetchPolicy",
    "InvalidImageError",
    "check_address",
    "decode_image_bytes",
    "fetch_url",
    "is_image_source_string",
    "load_image",
    "load_images",
    "source_bytes",
]

MB = 1024 * 1024
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


class InvalidImageError(InvalidInputError):
    """An image input that cannot be fetched or decoded (HTTP 400)."""

    code = "INPUT_IMAGE_INVALID"


@dataclass(frozen=True)
class ImageFetchPolicy:
    """Limits for loading images. Defaults follow the hosted API (8 MB per image)."""

    max_bytes: int = 8 * MB
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 20.0  # whole download, so a server that drips bytes cannot hold a worker
    max_redirects: int = 3
    allow_private: bool = False  # private / loopback / link-local / reserved targets (SSRF guard)
    max_pixels: int = 64_000_000  # decompression-bomb guard, checked before pixels are decoded
    max_concurrent_fetches: int = 8
    user_agent: str = "jinaserve-image-fetch/1"

    @classmethod
    def from_settings(cls, settings: Any) -> ImageFetchPolicy:
        """Build from `jinaserve.config.Settings` (attributes `image_*`); missing ones keep defaults."""
        names = {"max_bytes": "image_max_bytes", "connect_timeout_s": "image_connect_timeout_s",
                 "read_timeout_s": "image_read_timeout_s", "total_timeout_s": "image_fetch_timeout_s",
                 "max_redirects": "image_max_redirects", "allow_private": "image_allow_private_urls",
                 "max_pixels": "image_max_pixels", "max_concurrent_fetches": "image_max_concurrent_fetches"}
        values = {k: getattr(settings, v) for k, v in names.items() if getattr(settings, v, None) is not None}
        return cls(**values)


def _where(index: int | None) -> str:
    return f"Input at index {index}" if index is not None else "Image input"


def _fail(index: int | None, message: str) -> InvalidImageError:
    return InvalidImageError(f"{_where(index)}: {message}")


# --------------------------------------------------------------------------- source classification
def is_image_source_string(value: str) -> bool:
    """True for strings that are unambiguously images (data URIs of an image type)."""
    return value[:11].lower() == "data:image/"


def _b64_decoded_size(text: str) -> int:
    n = len(text)
    return n * 3 // 4 - text.endswith("=") - text.endswith("==")


def _decode_base64(text: str, policy: ImageFetchPolicy, index: int | None) -> bytes:
    compact = re.sub(r"\s+", "", text)
    if not compact:
        raise _fail(index, "the image is empty")
    if _b64_decoded_size(compact) > policy.max_bytes:
        raise _fail(index, f"the image is larger than the {_fmt_bytes(policy.max_bytes)} limit")
    if not _B64_CHARS.match(compact):
        raise _fail(index, "not a valid image source: expected an http(s) URL, a data: URI or base64 data")
    if "-" in compact or "_" in compact:  # URL-safe alphabet
        compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(index, "invalid base64 image data") from None


def _decode_data_uri(uri: str, policy: ImageFetchPolicy, index: int | None) -> bytes:
    m = _DATA_URI.match(uri)
    if m is None:
        raise _fail(index, "malformed data: URI (expected data:image/<type>;base64,<data>)")
    mime = (m.group("mime") or "").lower()
    if mime and not (mime.startswith("image/") or mime == "application/octet-stream"):
        raise _fail(index, f"data: URI has media type {mime!r}, not an image")
    payload = uri[m.end():]
    if not m.group("b64"):
        raise _fail(index, "data: URI is not base64-encoded (add ';base64')")
    return _decode_base64(payload, policy, index)


def _fmt_bytes(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n} bytes"


# --------------------------------------------------------------------------- SSRF guard
def _address_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attr, label in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                        ("is_private", "private"), ("is_multicast", "multicast"),
                        ("is_unspecified", "unspecified"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return label
    if not ip.is_global:
        return "non-public"
    return None


def check_address(host: str, port: int, policy: ImageFetchPolicy, index: int | None = None) -> str:
    """Resolve `host` and return one address that the policy allows (raises otherwise).

    With `allow_private=False` every resolved address must be public: a name that resolves to both a
    public and a private address is refused, so a client cannot rely on resolver ordering.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise _fail(index, f"could not resolve image host {host!r} ({exc})") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise _fail(index, f"could not resolve image host {host!r}")
    if not policy.allow_private:
        for addr in addresses:
            reason = _address_refused(ipaddress.ip_address(addr))
            if reason is not None:
                raise _fail(index, f"image URL host {host!r} resolves to a {reason} address ({addr}); "
                            f"fetching from such addresses is disabled on this server "
                            f"(operators can allow it with image_allow_private_urls)")
    return addresses[0]


# --------------------------------------------------------------------------- URL fetching
def fetch_url(url: str, policy: ImageFetchPolicy, index: int | None = None) -> bytes:
    """Download an image URL under `policy`; returns the raw bytes."""
    import httpx

    deadline = time.monotonic() + policy.total_timeout_s
    timeout = httpx.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s,
                            write=policy.read_timeout_s, pool=policy.connect_timeout_s)
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(policy.max_redirects + 1):
            if time.monotonic() > deadline:
                raise _fail(index, f"fetching the image URL took longer than {policy.total_timeout_s:g} s")
            parts = urlsplit(current)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise _fail(index, f"image URL scheme {scheme!r} is not supported (use http or https)")
            host = parts.hostname
            if not host:
                raise _fail(index, f"image URL {_short(current)!r} has no host")
            try:
                port = parts.port or (443 if scheme == "https" else 80)
            except ValueError:
                raise _fail(index, f"image URL {_short(current)!r} has an invalid port") from None
            address = check_address(host, port, policy, index)
            target_host = f"[{address}]" if ":" in address else address
            target = f"{scheme}://{target_host}:{port}{parts.path or '/'}"
            if parts.query:
                target += f"?{parts.query}"
            host_header = host if parts.port is None else f"{host}:{parts.port}"
            headers = {"Host": host_header, "User-Agent": policy.user_agent,
                       "Accept": "image/*,application/octet-stream;q=0.5"}
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            try:
                with client.stream("GET", target, headers=headers, extensions=extensions) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise _fail(index, "image URL redirected without a Location header")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code != 200:
                        raise _fail(index, f"fetching the image URL returned HTTP {resp.status_code}")
                    _check_content_type(resp.headers.get("content-type"), index)
                    length = resp.headers.get("content-length")
                    if length and length.isdigit() and int(length) > policy.max_bytes:
                        raise _fail(index, f"the image at the URL is {_fmt_bytes(int(length))}, over the "
                                    f"{_fmt_bytes(policy.max_bytes)} limit")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in resp.iter_bytes():  # each network read, so the deadline is checked often
                        size += len(chunk)
                        if size > policy.max_bytes:
                            raise _fail(index, f"the image at the URL is over the {_fmt_bytes(policy.max_bytes)}"
                                        f" limit")
                        if time.monotonic() > deadline:
                            raise _fail(index, f"fetching the image URL took longer than "
                                        f"{policy.total_timeout_s:g} s")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.TimeoutException:
                raise _fail(index, "timed out fetching the image URL") from None
            except httpx.HTTPError as exc:
                raise _fail(index, f"could not fetch the image URL ({type(exc).__name__}: {exc})") from None
    raise _fail(index, f"image URL redirected more than {policy.max_redirects} times")


def _check_content_type(value: str | None, index: int | None) -> None:
    if not value:
        return  # let the decoder decide
    mime = value.split(";", 1)[0].strip().lower()
    if mime.startswith("image/") or mime in ("application/octet-stream", "binary/octet-stream"):
        return
    raise _fail(index, f"the image URL returned content-type {mime!r}, not an image")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------- decoding
def decode_image_bytes(data: bytes, policy: ImageFetchPolicy, index: int | None = None) -> Image:
    """Decode image bytes with Pillow into an RGB image, with size and pixel-count limits."""
    try:
        from PIL import Image as PILImage
        from PIL import UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InvalidImageError("Image inputs need Pillow: pip install 'jinaserve[vision]'") from exc
    if len(data) > policy.max_bytes:
        raise _fail(index, f"the image is {_fmt_bytes(len(data))}, over the {_fmt_bytes(policy.max_bytes)} limit")
    if not data:
        raise _fail(index, "the image is empty")
    try:
        img = PILImage.open(BytesIO(data))
        width, height = img.size
        if width * height > policy.max_pixels:
            raise _fail(index, f"the image has {width}x{height} pixels, over the limit of {policy.max_pixels}")
        img.load()
        return _to_rgb(img)
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, PILImage.DecompressionBombError):
        raise _fail(index, "the data is not a decodable image (supported: PNG, JPEG, GIF, WebP, BMP, TIFF...)") \
            from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _fail(index, f"the image data is corrupt or truncated ({exc})") from None


def _to_rgb(img: Any) -> Any:
    if img.mode == "RGB":
        return img
    return img.convert("RGB")


def source_bytes(source: str | bytes | bytearray | memoryview, policy: ImageFetchPolicy,
                 index: int | None = None) -> bytes:
    """The raw bytes of a remote-safe source: URL, data URI, base64 string, or bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    text = source.strip()
    lower = text[:8].lower()
    if lower.startswith(("http://", "https://")):
        return fetch_url(text, policy, index)
    if lower.startswith("data:"):
        return _decode_data_uri(text, policy, index)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        scheme = text.split("://", 1)[0]
        raise _fail(index, f"image URL scheme {scheme!r} is not supported (use http or https)")
    return _decode_base64(text, policy, index)


def load_image(source: Any, *, policy: ImageFetchPolicy | None = None, index: int | None = None,
               allow_local: bool = False) -> Image:
    """One image source → RGB PIL image. `allow_local` enables file paths and PIL objects (in-process)."""
    policy = policy or ImageFetchPolicy()
    try:
        from PIL import Image as PILImage
    except ImportError as exc:  # pragma: no cover
        raise InvalidImageError("Image inputs need Pillow: pip install 'jinaserve[vision]'") from exc
    if isinstance(source, PILImage.Image):
        if not allow_local:
            raise _fail(index, "PIL images are accepted only by the in-process API")
        w, h = source.size
        if w * h > policy.max_pixels:
            raise _fail(index, f"the image has {w}x{h} pixels, over the limit of {policy.max_pixels}")
        return _to_rgb(source)
    if isinstance(source, Path):
        if not allow_local:
            raise _fail(index, "local file paths are accepted only by the in-process API")
        return _read_local(source, policy, index)
    if isinstance(source, str):
        text = source.strip()
        if allow_local and not text.lower().startswith(("http://", "https://", "data:")) \
                and _looks_like_path(text):
            return _read_local(Path(text).expanduser(), policy, index)
    elif not isinstance(source, bytes | bytearray | memoryview):
        raise _fail(index, f"unsupported image source type {type(source).__name__}")
    try:
        return decode_image_bytes(source_bytes(source, policy, index), policy, index)
    except InvalidImageError as exc:
        if isinstance(source, str) and allow_local and re.search(r"\.(png|jpe?g|gif|webp|bmp|tiff?)$", source.strip(),
                                                                 re.IGNORECASE):
            raise _fail(index, f"image file {source.strip()!r} does not exist") from None
        if isinstance(source, str) and not allow_local and re.match(r"^(/|\./|\.\./|~|[A-Za-z]:\\)", source.strip()):
            # base64 may start with "/" (JPEG: "/9j/"), so a path is only suspected once decoding failed
            raise InvalidImageError(f"{exc.message} (local file paths are read only by the in-process API; over "
                                    f"HTTP send base64, a data: URI or an http(s) URL)") from None
        raise


def _looks_like_path(text: str) -> bool:
    if len(text) > 4096:
        return False
    if text.startswith(("/", "./", "../", "~")) or "\\" in text or re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _read_local(path: Path, policy: ImageFetchPolicy, index: int | None) -> Image:
    try:
        size = path.stat().st_size
    except OSError:
        raise _fail(index, f"image file {str(path)!r} does not exist or cannot be read") from None
    if size > policy.max_bytes:
        raise _fail(index, f"image file {str(path)!r} is {_fmt_bytes(size)}, over the "
                    f"{_fmt_bytes(policy.max_bytes)} limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(index, f"cannot read image file {str(path)!r} ({exc})") from None
    return decode_image_bytes(data, policy, index)


def load_images(sources: Sequence[Any], *, policy: ImageFetchPolicy | None = None,
                indices: Sequence[int] | None = None, allow_local: bool = False) -> list[Image]:
    """Load many sources; URLs are fetched concurrently (bounded). The first failure (lowest input
    index) is raised; the others are dropped."""
    policy = policy or ImageFetchPolicy()
    idx = list(indices) if indices is not None else list(range(len(sources)))
    n_urls = sum(1 for s in sources if isinstance(s, str) and s.lstrip()[:8].lower().startswith(("http://",
                                                                                                  "https://")))
    if n_urls <= 1 or policy.max_concurrent_fetches <= 1:
        return [load_image(s, policy=policy, index=i, allow_local=allow_local) for s, i in zip(sources, idx,
                                                                                                 strict=True)]
    workers = min(policy.max_concurrent_fetches, len(sources))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-fetch") as pool:
        futures = [pool.submit(load_image, s, policy=policy, index=i, allow_local=allow_local)
                   for s, i in zip(sources, idx, strict=True)]
        results: list[Image] = []
        first_error: BaseException | None = None
        for f in futures:
            try:
                results.append(f.result())
            except BaseException as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
        return results
