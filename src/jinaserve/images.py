"""Image sources → decoded RGB Pillow images, for multimodal families (jina-embeddings-v4, rerankers, CLIP).

Every family that takes images loads them here (`load_images`), so the limits below hold for all of them.

Accepted sources (one per request input):

* an ``http(s)://`` URL, downloaded by `jinaserve.image_fetch` (async, capped, SSRF-guarded);
* a ``data:image/...;base64,`` URI or a raw base64 string;
* raw ``bytes`` (in-process API, and URLs the server already downloaded);
* a local file path or ``pathlib.Path`` and a ``PIL.Image.Image`` (in-process API only; an HTTP
  request can never make the server read its own files).

Memory is bounded before any pixel is decoded; the sizes come from the image headers:

* per image: `max_bytes` (encoded) and `max_pixels` (width × height);
* per request: `max_request_bytes` (all its images, encoded) and `max_request_pixels` (all its images,
  as decoded — after the JPEG draft below), checked over every header before the first decode;
* per server: `decode_memory_bytes`, the decoded pixel buffers alive at once across all requests. An image
  waits (up to `decode_wait_s`) for room, so concurrent requests cannot add up past it.

Images are shrunk as early as possible to what the model's processor keeps (`DownscaleTarget`, from the
processor's own bounds): JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg (`Image.draft`), other
formats are box-reduced by an integer factor right after decoding (`Image.reduce`), never below the
processor's target, so the processor still makes the final resize. Images are decoded one after the other,
and each full-size buffer is dropped before the next is decoded.

Every failure raises `InvalidImageError` (HTTP 400) or, for a size limit, `ImageTooLargeError` (413);
messages name the input index and the setting.

    from jinaserve.images import ImageFetchPolicy, load_image, load_images
    img = load_image("https://example.com/cat.png", policy=ImageFetchPolicy(), index=0)

Pillow is imported lazily (the ``vision`` extra), so importing this module is cheap.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OverloadedError
from .image_fetch import (
    MB,
    ImageTooLargeError,
    InvalidImageError,
    check_address,
    fail,
    fetch_all,
    fetch_all_sync,
    fetch_url,
    fmt_bytes,
    is_url,
    too_large,
)

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = [
    "DownscaleTarget",
    "ImageFetchPolicy",
    "ImageTooLargeError",
    "InvalidImageError",
    "check_address",
    "decode_image_bytes",
    "fetch_url",
    "is_image_source_string",
    "load_image",
    "load_images",
    "prefetch_urls",
    "source_bytes",
]

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


@dataclass(frozen=True)
class DownscaleTarget:
    """The smallest image a model's processor still uses: shrinking to it first changes nothing the
    processor keeps, and saves the memory and time of the full size."""

    pixels: int | None = None  # the processor shrinks to at most this many pixels (Qwen2-VL `max_pixels`)
    short_edge: int | None = None  # the processor resizes the shorter edge to this (CLIP `size.shortest_edge`)

    def scale(self, width: int, height: int) -> float:
        """Largest shrink factor (≤ 1) that keeps the image at or above the target."""
        needs: list[float] = []
        if self.pixels:
            needs.append(math.sqrt(self.pixels / max(1, width * height)))
        if self.short_edge:
            needs.append(self.short_edge / max(1, min(width, height)))
        return min(1.0, max(needs)) if needs else 1.0

    @classmethod
    def of_processor(cls, processor: Any) -> DownscaleTarget | None:
        """Read the bounds of a transformers image processor (Qwen2-VL pixel bounds, or a CLIP-style
        shortest edge); None when it has none this understands."""
        def get(obj: Any, key: str) -> Any:  # transformers keeps sizes in dicts or SizeDicts
            return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

        size = getattr(processor, "size", None)
        if hasattr(processor, "temporal_patch_size"):  # Qwen2-VL: `size.longest_edge` is max_pixels
            pixels = getattr(processor, "max_pixels", None) or get(size, "max_pixels") or get(size, "longest_edge")
            return cls(pixels=int(pixels)) if pixels else None
        short = get(size, "shortest_edge")
        crop = getattr(processor, "crop_size", None)
        if get(crop, "height") and get(crop, "width"):
            short = max(int(short or 0), int(get(crop, "height")), int(get(crop, "width")))
        return cls(short_edge=int(short)) if short else None


@dataclass(frozen=True)
class ImageFetchPolicy:
    """Limits for loading images. Defaults follow the hosted API (8 MB per image)."""

    max_bytes: int = 8 * MB
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 20.0  # all of a request's downloads, so a host that drips bytes cannot hold it
    max_redirects: int = 3
    allow_private: bool = False  # private / loopback / link-local / reserved targets (SSRF guard)
    max_pixels: int = 64_000_000  # per image (decompression-bomb guard), from the header, before decoding
    max_concurrent_fetches: int = 8  # downloads at once, whole server
    max_fetches_per_host: int = 4  # downloads at once from one host
    max_request_bytes: int | None = 64 * MB  # encoded bytes of all of a request's images
    max_request_pixels: int | None = 256_000_000  # decoded pixels of all of a request's images
    decode_memory_bytes: int | None = 1024 * MB  # decoded pixel buffers alive at once, whole server
    decode_wait_s: float = 30.0  # longest wait for room in the decode budget before a 429
    target: DownscaleTarget | None = None  # the model's processor bounds (set by the family)
    user_agent: str = "jinaserve-image-fetch/1"

    @classmethod
    def from_settings(cls, settings: Any) -> ImageFetchPolicy:
        """Build from `jinaserve.config.Settings` (attributes `image_*`); missing ones keep defaults."""
        names = {"max_bytes": "image_max_bytes", "connect_timeout_s": "image_connect_timeout_s",
                 "read_timeout_s": "image_read_timeout_s", "total_timeout_s": "image_fetch_timeout_s",
                 "max_redirects": "image_max_redirects", "allow_private": "image_allow_private_urls",
                 "max_pixels": "image_max_pixels", "max_concurrent_fetches": "image_max_concurrent_fetches",
                 "max_fetches_per_host": "image_max_fetches_per_host",
                 "max_request_bytes": "image_max_request_bytes", "max_request_pixels": "image_max_request_pixels"}
        values = {k: getattr(settings, v) for k, v in names.items() if getattr(settings, v, None) is not None}
        memory_mb = getattr(settings, "image_decode_memory_mb", None)
        if memory_mb is not None:
            values["decode_memory_bytes"] = int(memory_mb * MB)
        return cls(**values)

    def for_processor(self, processor: Any) -> ImageFetchPolicy:
        """This policy with the processor's bounds as the early-downscale target."""
        return replace(self, target=DownscaleTarget.of_processor(processor))


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
        raise fail(index, "the image is empty")
    if _b64_decoded_size(compact) > policy.max_bytes:
        raise too_large(index, f"the image is larger than the {fmt_bytes(policy.max_bytes)} limit (image_max_bytes)")
    if not _B64_CHARS.match(compact):
        raise fail(index, "not a valid image source: expected an http(s) URL, a data: URI or base64 data")
    if "-" in compact or "_" in compact:  # URL-safe alphabet
        compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise fail(index, "invalid base64 image data") from None


def _decode_data_uri(uri: str, policy: ImageFetchPolicy, index: int | None) -> bytes:
    m = _DATA_URI.match(uri)
    if m is None:
        raise fail(index, "malformed data: URI (expected data:image/<type>;base64,<data>)")
    mime = (m.group("mime") or "").lower()
    if mime and not (mime.startswith("image/") or mime == "application/octet-stream"):
        raise fail(index, f"data: URI has media type {mime!r}, not an image")
    payload = uri[m.end():]
    if not m.group("b64"):
        raise fail(index, "data: URI is not base64-encoded (add ';base64')")
    return _decode_base64(payload, policy, index)


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
        raise fail(index, f"image URL scheme {scheme!r} is not supported (use http or https)")
    return _decode_base64(text, policy, index)


async def prefetch_urls(sources: Sequence[Any], policy: ImageFetchPolicy,
                        indices: Sequence[int] | None = None) -> list[Any]:
    """`sources` with every http(s) URL replaced by its downloaded bytes (async, on the image I/O loop);
    other sources are returned as they are. The server calls this before planning, so no planning thread
    ever waits on a download."""
    idx = list(indices) if indices is not None else list(range(len(sources)))
    urls = [(pos, s.strip(), i) for pos, (s, i) in enumerate(zip(sources, idx, strict=True)) if is_url(s)]
    if not urls:
        return list(sources)
    fetched = await fetch_all([(u, i) for _, u, i in urls], policy)
    out = list(sources)
    for (pos, _, _), data in zip(urls, fetched, strict=True):
        out[pos] = data
    return out


# --------------------------------------------------------------------------- memory budgets
class _DecodeBudget:
    """Bytes of decoded pixel buffers alive at once in this process (a weighted semaphore)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int, policy: ImageFetchPolicy, index: int | None) -> Iterator[None]:
        if n > self.capacity:
            raise too_large(index, f"decoding the image needs {fmt_bytes(n)}, more than the server's image "
                            f"decoding budget of {fmt_bytes(self.capacity)} (image_decode_memory_mb); send a "
                            f"smaller image")
        deadline = time.monotonic() + policy.decode_wait_s
        with self._cond:
            while self.used + n > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OverloadedError("The server is decoding other images up to its memory budget "
                                          "(image_decode_memory_mb); retry later.", retry_after_s=1)
                self._cond.wait(left)
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


_BUDGETS: dict[int, _DecodeBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def _decode_budget(policy: ImageFetchPolicy) -> _DecodeBudget | None:
    if policy.decode_memory_bytes is None:
        return None
    with _BUDGETS_LOCK:
        return _BUDGETS.setdefault(policy.decode_memory_bytes, _DecodeBudget(policy.decode_memory_bytes))


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel: 1 byte for 1/L/P, 2 for I;16*, else 4 (RGB is stored as 4 bytes)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}

_LIBC: Any = None


def release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise: big decodes leave RSS high)."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    trim = getattr(_LIBC, "malloc_trim", None) if _LIBC else None
    if trim is not None:
        trim(0)


# --------------------------------------------------------------------------- decoding
def _pil() -> Any:
    try:
        from PIL import Image as PILImage
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InvalidImageError("Image inputs need Pillow: pip install 'jinaserve[vision]'") from exc
    return PILImage


@dataclass
class _Opened:
    """An image whose header is read (nothing decoded yet), and what decoding it will cost."""

    image: Any
    index: int | None
    decode_pixels: int  # after the JPEG draft
    decode_bytes: int  # peak buffer bytes while decoding and shrinking
    encoded_bytes: int = 0
    decoded: bool = False  # an in-process PIL image: nothing left to decode


def _open(data: bytes, policy: ImageFetchPolicy, index: int | None) -> _Opened:
    PILImage = _pil()
    from PIL import UnidentifiedImageError

    if len(data) > policy.max_bytes:
        raise too_large(index, f"the image is {fmt_bytes(len(data))}, over the {fmt_bytes(policy.max_bytes)} limit "
                        f"(image_max_bytes)")
    if not data:
        raise fail(index, "the image is empty")
    try:
        img = PILImage.open(BytesIO(data))
    except (UnidentifiedImageError, PILImage.DecompressionBombError):
        raise fail(index, "the data is not a decodable image (supported: PNG, JPEG, GIF, WebP, BMP, TIFF...)") \
            from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise fail(index, f"the image data is corrupt or truncated ({exc})") from None
    opened = _plan_decode(img, policy, index)
    opened.encoded_bytes = len(data)
    return opened


def _plan_decode(img: Any, policy: ImageFetchPolicy, index: int | None) -> _Opened:
    width, height = img.size
    if width * height > policy.max_pixels:
        raise too_large(index, f"the image has {width}x{height} pixels, over the limit of {policy.max_pixels} "
                        f"(image_max_pixels)")
    scale = policy.target.scale(width, height) if policy.target else 1.0
    if scale < 0.5 and getattr(img, "format", None) == "JPEG" and hasattr(img, "draft"):
        # libjpeg decodes straight to 1/2, 1/4 or 1/8 scale, never below the requested size
        try:
            img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        except (OSError, ValueError):
            pass
        width, height = img.size
    per_pixel = _bytes_per_pixel(img.mode)
    if img.mode not in _REDUCIBLE and scale < 0.5:
        per_pixel += 4  # converted to RGB at full size before the box reduction
    return _Opened(img, index, width * height, width * height * per_pixel)


def _decode(opened: _Opened, policy: ImageFetchPolicy) -> Image:
    PILImage = _pil()
    img, index = opened.image, opened.index
    try:
        img.load()
        width, height = img.size
        factor = int(1 / policy.target.scale(width, height)) if policy.target else 1
        if factor >= 2:
            if img.mode not in _REDUCIBLE:
                img = _to_rgb(img)
            img = img.reduce(factor)
        return _to_rgb(img)
    except (PILImage.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise fail(index, f"the image data is corrupt or truncated ({exc})") from None
    finally:
        opened.image = None  # the full-size buffer goes now, before the next image is decoded


def _to_rgb(img: Any) -> Any:
    if img.mode == "RGB":
        return img
    return img.convert("RGB")


def _decode_all(opened: list[_Opened], policy: ImageFetchPolicy) -> list[Image]:
    """Check the request's pixel budget over all headers, then decode one image at a time."""
    total = sum(o.decode_pixels for o in opened)
    if policy.max_request_pixels is not None and total > policy.max_request_pixels:
        raise too_large(opened[0].index if len(opened) == 1 else None,
                        f"the request's images have {total:,} pixels in total, over the per-request limit of "
                        f"{policy.max_request_pixels:,} (image_max_request_pixels); send fewer or smaller images")
    total_bytes = sum(o.encoded_bytes for o in opened)
    if policy.max_request_bytes is not None and total_bytes > policy.max_request_bytes:
        raise too_large(None, f"the request's images total {fmt_bytes(total_bytes)}, over the per-request limit of "
                        f"{fmt_bytes(policy.max_request_bytes)} (image_max_request_bytes); send fewer or smaller "
                        f"images")
    budget = _decode_budget(policy)
    out: list[Image] = []
    big = 0
    for o in opened:
        if o.decoded:
            out.append(_to_rgb(o.image))
            continue
        big += o.decode_bytes
        if budget is None:
            out.append(_decode(o, policy))
        else:
            with budget.hold(o.decode_bytes, policy, o.index):
                out.append(_decode(o, policy))
    if big >= 32 * MB:
        release_memory()
    return out


def decode_image_bytes(data: bytes, policy: ImageFetchPolicy, index: int | None = None) -> Image:
    """Decode image bytes with Pillow into an RGB image, under the size, pixel and memory limits."""
    return _decode_all([_open(data, policy, index)], policy)[0]


# --------------------------------------------------------------------------- loading
def _local_or_pil(source: Any, policy: ImageFetchPolicy, index: int | None, allow_local: bool) -> Any:
    """Bytes for `source`, or an opened PIL image (in-process); raises for sources HTTP may not use."""
    PILImage = _pil()
    if isinstance(source, PILImage.Image):
        if not allow_local:
            raise fail(index, "PIL images are accepted only by the in-process API")
        return source
    if isinstance(source, Path):
        if not allow_local:
            raise fail(index, "local file paths are accepted only by the in-process API")
        return _read_local(source, policy, index)
    if isinstance(source, str):
        text = source.strip()
        if allow_local and not text.lower().startswith(("http://", "https://", "data:")) and _looks_like_path(text):
            return _read_local(Path(text).expanduser(), policy, index)
    elif not isinstance(source, bytes | bytearray | memoryview):
        raise fail(index, f"unsupported image source type {type(source).__name__}")
    return None


def _explain(exc: InvalidImageError, source: Any, allow_local: bool, index: int | None) -> InvalidImageError:
    if isinstance(source, str) and allow_local and re.search(r"\.(png|jpe?g|gif|webp|bmp|tiff?)$", source.strip(),
                                                             re.IGNORECASE):
        return fail(index, f"image file {source.strip()!r} does not exist")
    if isinstance(source, str) and not allow_local and re.match(r"^(/|\./|\.\./|~|[A-Za-z]:\\)", source.strip()):
        # base64 may start with "/" (JPEG: "/9j/"), so a path is only suspected once decoding failed
        return InvalidImageError(f"{exc.message} (local file paths are read only by the in-process API; over "
                                 f"HTTP send base64, a data: URI or an http(s) URL)")
    return exc


def _opened(source: Any, data: bytes | None, policy: ImageFetchPolicy, index: int | None,
            allow_local: bool) -> _Opened:
    PILImage = _pil()
    try:
        local = _local_or_pil(source, policy, index, allow_local) if data is None else data
        if isinstance(local, PILImage.Image):
            w, h = local.size
            if w * h > policy.max_pixels:
                raise too_large(index, f"the image has {w}x{h} pixels, over the limit of {policy.max_pixels} "
                                f"(image_max_pixels)")
            return _Opened(local, index, 0, 0, decoded=True)
        if local is None:
            local = source_bytes(source, policy, index)
        return _open(local, policy, index)
    except ImageTooLargeError:
        raise
    except InvalidImageError as exc:
        raise _explain(exc, source, allow_local, index) from None


def load_image(source: Any, *, policy: ImageFetchPolicy | None = None, index: int | None = None,
               allow_local: bool = False) -> Image:
    """One image source → RGB PIL image. `allow_local` enables file paths and PIL objects (in-process)."""
    return load_images([source], policy=policy, indices=[index], allow_local=allow_local)[0]


def load_images(sources: Sequence[Any], *, policy: ImageFetchPolicy | None = None,
                indices: Sequence[int | None] | None = None, allow_local: bool = False) -> list[Image]:
    """Load a request's images: URLs not yet downloaded are fetched concurrently (bounded), every header
    is checked against the limits before anything is decoded, then images are decoded one at a time.
    The first failure (lowest input index) is raised."""
    policy = policy or ImageFetchPolicy()
    idx: list[int | None] = list(indices) if indices is not None else list(range(len(sources)))
    urls = [(pos, s) for pos, s in enumerate(sources) if is_url(s)]
    fetched: dict[int, bytes] = {}
    if urls:
        datas = fetch_all_sync([(s, idx[pos]) for pos, s in urls], policy)
        fetched = {pos: d for (pos, _), d in zip(urls, datas, strict=True)}
    opened = [_opened(s, fetched.get(pos), policy, idx[pos], allow_local) for pos, s in enumerate(sources)]
    return _decode_all(opened, policy)


def _looks_like_path(text: str) -> bool:
    if len(text) > 4096:
        return False
    if text.startswith(("/", "./", "../", "~")) or "\\" in text or re.match(r"^[A-Za-z]:[\\/]", text):
        return True
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _read_local(path: Path, policy: ImageFetchPolicy, index: int | None) -> bytes:
    try:
        size = path.stat().st_size
    except OSError:
        raise fail(index, f"image file {str(path)!r} does not exist or cannot be read") from None
    if size > policy.max_bytes:
        raise too_large(index, f"image file {str(path)!r} is {fmt_bytes(size)}, over the "
                        f"{fmt_bytes(policy.max_bytes)} limit (image_max_bytes)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(index, f"cannot read image file {str(path)!r} ({exc})") from None
