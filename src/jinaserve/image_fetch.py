"""Image URL downloads: asynchronous, bounded, and guarded against SSRF.

Every download runs on one dedicated I/O event loop thread (`httpx.AsyncClient`), never on a thread of a
pool that planning or tokenisation use, so a slow image host can hold nothing but a socket:

* a server-wide cap on downloads running at once (`max_concurrent_fetches`) and a cap per host
  (`max_fetches_per_host`), so one slow host cannot take every download slot;
* one deadline for all of a request's downloads (`total_timeout_s`, waiting for a slot included): waiting
  past it for a free slot is back-pressure (429), a host too slow to deliver in time is a bad input (400);
* connect / read timeouts, a byte cap per image enforced while streaming and one per request, a
  content-type check and a bounded number of redirects;
* the SSRF guard: private, loopback, link-local, multicast and reserved addresses are refused (each
  redirect hop is checked again, and the connection goes to the address that was checked, so DNS cannot
  swap it afterwards) unless the operator allows them.

`fetch_all` is the coroutine (awaited by the server from any event loop); `fetch_url` / `fetch_all_sync`
are the blocking forms for the in-process API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

from .errors import InvalidInputError, OverloadedError, PayloadTooLargeError

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .images import ImageFetchPolicy

__all__ = ["check_address", "fetch_all", "fetch_all_sync", "fetch_url", "is_url"]

MB = 1024 * 1024
T = TypeVar("T")


class InvalidImageError(InvalidInputError):
    """An image input that cannot be fetched or decoded (HTTP 400)."""

    code = "INPUT_IMAGE_INVALID"


class ImageTooLargeError(InvalidImageError, PayloadTooLargeError):
    """An image (or a request's images together) over a configured size limit (HTTP 413)."""

    status = 413
    code = "INPUT_TOO_LARGE"


def where(index: int | None) -> str:
    return f"Input at index {index}" if index is not None else "Image input"


def fail(index: int | None, message: str) -> InvalidImageError:
    return InvalidImageError(f"{where(index)}: {message}")


def too_large(index: int | None, message: str) -> ImageTooLargeError:
    return ImageTooLargeError(f"{where(index)}: {message}")


def fmt_bytes(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n} bytes"


def is_url(source: Any) -> bool:
    return isinstance(source, str) and source.lstrip()[:8].lower().startswith(("http://", "https://"))


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


def _pick_address(host: str, infos: Sequence[Any], policy: ImageFetchPolicy, index: int | None) -> str:
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise fail(index, f"could not resolve image host {host!r}")
    if not policy.allow_private:
        for addr in addresses:
            reason = _address_refused(ipaddress.ip_address(addr))
            if reason is not None:
                raise fail(index, f"image URL host {host!r} resolves to a {reason} address ({addr}); "
                           f"fetching from such addresses is disabled on this server "
                           f"(operators can allow it with image_allow_private_urls)")
    return addresses[0]


def check_address(host: str, port: int, policy: ImageFetchPolicy, index: int | None = None) -> str:
    """Resolve `host` and return one address that the policy allows (raises otherwise).

    With `allow_private=False` every resolved address must be public: a name that resolves to both a
    public and a private address is refused, so a client cannot rely on resolver ordering.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise fail(index, f"could not resolve image host {host!r} ({exc})") from None
    return _pick_address(host, infos, policy, index)


async def _resolve(host: str, port: int, policy: ImageFetchPolicy, index: int | None) -> str:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise fail(index, f"could not resolve image host {host!r} ({exc})") from None
    return _pick_address(host, infos, policy, index)


# --------------------------------------------------------------------------- the I/O loop
class _IOLoop:
    """One event loop on a daemon thread, started on first use, shared by every model and request."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.client: httpx.AsyncClient | None = None
        self._limits: dict[tuple[int, int], _Limits] = {}

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="image-io", daemon=True).start()
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def http(self) -> httpx.AsyncClient:  # called on the I/O loop only
        if self.client is None:
            import httpx

            self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                            limits=httpx.Limits(max_connections=None, max_keepalive_connections=16))
        return self.client

    def limits(self, policy: ImageFetchPolicy) -> _Limits:  # called on the I/O loop only
        key = (max(1, policy.max_concurrent_fetches), max(1, policy.max_fetches_per_host))
        if key not in self._limits:
            self._limits[key] = _Limits(*key)
        return self._limits[key]


_IO = _IOLoop()


class _Limits:
    """The download slots: `total` for the whole server, one semaphore per host (dropped when unused)."""

    def __init__(self, total: int, per_host: int) -> None:
        self.total = asyncio.Semaphore(total)
        self.per_host = per_host
        self._hosts: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str, deadline: float, policy: ImageFetchPolicy) -> AsyncIterator[None]:
        sem, users = self._hosts.get(host, (None, 0))
        if sem is None:
            sem = asyncio.Semaphore(self.per_host)
        self._hosts[host] = (sem, users + 1)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await sem.acquire()  # the host's slot first: a slow host's queue holds no server-wide slot
                    try:
                        await self.total.acquire()
                    except BaseException:
                        sem.release()
                        raise
            except TimeoutError:
                raise OverloadedError(
                    f"Image downloads are at capacity (image_max_concurrent_fetches={policy.max_concurrent_fetches}, "
                    f"image_max_fetches_per_host={policy.max_fetches_per_host}) and no slot came free within "
                    f"{policy.total_timeout_s:g} s; retry later.", retry_after_s=1) from None
            try:
                yield
            finally:
                self.total.release()
                sem.release()
        finally:
            sem, users = self._hosts[host]
            if users <= 1:
                del self._hosts[host]
            else:
                self._hosts[host] = (sem, users - 1)


# --------------------------------------------------------------------------- downloads
@dataclass
class _Hop:
    url: str
    scheme: str
    host: str
    port: int
    explicit_port: bool
    path_query: str

    @classmethod
    def parse(cls, url: str, index: int | None) -> _Hop:
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed IPv6 bracket, "http://[::1/x.png"
            raise fail(index, f"image URL {_short(url)!r} is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise fail(index, f"image URL scheme {scheme!r} is not supported (use http or https)")
        if not parts.hostname:
            raise fail(index, f"image URL {_short(url)!r} has no host")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise fail(index, f"image URL {_short(url)!r} has an invalid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, scheme, parts.hostname, port, parts.port is not None, path)

    def request(self, address: str, policy: ImageFetchPolicy) -> tuple[str, dict[str, str], dict[str, Any]]:
        """URL to the checked address, the headers naming the real host, and the TLS server name."""
        target_host = f"[{address}]" if ":" in address else address
        headers = {"Host": f"{self.host}:{self.port}" if self.explicit_port else self.host,
                   "User-Agent": policy.user_agent, "Accept": "image/*,application/octet-stream;q=0.5"}
        extensions = {"sni_hostname": self.host} if self.scheme == "https" else {}
        return f"{self.scheme}://{target_host}:{self.port}{self.path_query}", headers, extensions


class _ByteBudget:
    """Bytes downloaded for one request, against the per-request cap."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int, index: int | None) -> None:
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise too_large(index, f"the request's images total more than {fmt_bytes(self.limit)} "
                            f"(image_max_request_bytes); send fewer or smaller images")


async def _download(hop: _Hop, address: str, policy: ImageFetchPolicy, budget: _ByteBudget,
                    index: int | None) -> bytes | str:
    """One GET: the body, or the redirect target (str)."""
    import httpx

    target, headers, extensions = hop.request(address, policy)
    timeout = httpx.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s,
                            write=policy.read_timeout_s, pool=policy.connect_timeout_s)
    try:
        async with _IO.http().stream("GET", target, headers=headers, extensions=extensions,
                                     timeout=timeout) as resp:
            if resp.is_redirect:
                location = resp.headers.get("location")
                if not location:
                    raise fail(index, "image URL redirected without a Location header")
                try:
                    return urljoin(hop.url, location)
                except ValueError:
                    raise fail(index, f"image URL redirected to an invalid URL {_short(location)!r}") from None
            if resp.status_code != 200:
                raise fail(index, f"fetching the image URL returned HTTP {resp.status_code}")
            _check_content_type(resp.headers.get("content-type"), index)
            length = resp.headers.get("content-length")
            if length and length.isdigit() and int(length) > policy.max_bytes:
                raise too_large(index, f"the image at the URL is {fmt_bytes(int(length))}, over the "
                                f"{fmt_bytes(policy.max_bytes)} limit (image_max_bytes)")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise too_large(index, f"the image at the URL is over the {fmt_bytes(policy.max_bytes)} limit "
                                    f"(image_max_bytes)")
                budget.take(len(chunk), index)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException:
        raise fail(index, "timed out fetching the image URL") from None
    except httpx.HTTPError as exc:
        raise fail(index, f"could not fetch the image URL ({type(exc).__name__}: {exc})") from None


async def _fetch_one(url: str, policy: ImageFetchPolicy, index: int | None, deadline: float,
                     budget: _ByteBudget) -> bytes:
    limits = _IO.limits(policy)
    late = fail(index, f"fetching the image URL took longer than {policy.total_timeout_s:g} s")
    current = url.strip()
    for _hop in range(policy.max_redirects + 1):
        hop = _Hop.parse(current, index)
        try:
            async with asyncio.timeout_at(deadline):
                address = await _resolve(hop.host, hop.port, policy, index)
        except TimeoutError:
            raise late from None
        async with limits.slot(hop.host.lower(), deadline, policy):
            try:
                async with asyncio.timeout_at(deadline):
                    result = await _download(hop, address, policy, budget, index)
            except TimeoutError:
                raise late from None
        if isinstance(result, bytes):
            return result
        current = result
    raise fail(index, f"image URL redirected more than {policy.max_redirects} times")


async def _fetch_on_io_loop(urls: Sequence[tuple[str, int | None]], policy: ImageFetchPolicy) -> list[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.total_timeout_s
    budget = _ByteBudget(policy.max_request_bytes)
    tasks = [loop.create_task(_fetch_one(url, policy, index, deadline, budget)) for url, index in urls]
    try:
        # The error to report is the one of the lowest input index: once input k failed, the downloads of
        # later inputs are dropped, and only earlier ones are still waited for.
        failed_at: int | None = None
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    pos = tasks.index(t)
                    failed_at = pos if failed_at is None else min(failed_at, pos)
            if failed_at is not None:
                for pos, t in enumerate(tasks):
                    if pos > failed_at and not t.done():
                        t.cancel()
                pending = {t for t in pending if tasks.index(t) < failed_at}
        if failed_at is not None:
            raise tasks[failed_at].exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def fetch_all(urls: Sequence[tuple[str, int | None]], policy: ImageFetchPolicy) -> list[bytes]:
    """Download `(url, input index)` pairs concurrently under `policy`, from any event loop; the bytes in
    order. The first failure by input index is raised. Cancelling the caller cancels the downloads."""
    if not urls:
        return []
    return await asyncio.wrap_future(_IO.submit(_fetch_on_io_loop(urls, policy)))


def fetch_all_sync(urls: Sequence[tuple[str, int | None]], policy: ImageFetchPolicy) -> list[bytes]:
    """`fetch_all` for plain threads (the in-process API)."""
    if not urls:
        return []
    return _IO.submit(_fetch_on_io_loop(urls, policy)).result()


def fetch_url(url: str, policy: ImageFetchPolicy, index: int | None = None) -> bytes:
    """Download one image URL under `policy` (blocking); returns the raw bytes."""
    return fetch_all_sync([(url, index)], policy)[0]


def _check_content_type(value: str | None, index: int | None) -> None:
    if not value:
        return  # let the decoder decide
    mime = value.split(";", 1)[0].strip().lower()
    if mime.startswith("image/") or mime in ("application/octet-stream", "binary/octet-stream"):
        return
    raise fail(index, f"the image URL returned content-type {mime!r}, not an image")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."
