"""Outbound HTTP for batch jobs (input_url downloads, webhooks) behind the same SSRF guard as image URLs.

Every hop (including each redirect) resolves the host with `images.check_address`, refuses private,
loopback, link-local and reserved addresses unless allowed, and connects to the checked address itself
(the Host header and TLS SNI keep the name), so a DNS answer cannot change between the check and the
connection.
"""

from __future__ import annotations

import time
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

from .errors import InvalidInputError
from .images import ImageFetchPolicy, InvalidImageError, check_address

USER_AGENT = "jinaserve-batch/1"


class URLRefusedError(InvalidInputError):
    code = "INPUT_URL_INVALID"


def check_url(url: str, *, what: str, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, checked address) of an http(s) URL, or URLRefusedError saying why not."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket, "http://[::1/"
        raise URLRefusedError(f"{what}: {url[:80]!r} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        hint = " (use a pre-signed https URL for S3 / GCS objects)" if scheme in ("s3", "gs", "gcs") else ""
        raise URLRefusedError(f"{what}: scheme {scheme!r} is not supported; use http or https{hint}")
    host = parts.hostname
    if not host:
        raise URLRefusedError(f"{what}: the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise URLRefusedError(f"{what}: the URL has an invalid port") from None
    try:
        address = check_address(host, port, ImageFetchPolicy(allow_private=allow_private))
    except InvalidImageError as exc:
        message = exc.message.removeprefix("Image input: ").replace("image URL host", "host")
        message = message.replace("image host", "host")
        message = message.replace("image_allow_private_urls", "batch_allow_private_urls")
        raise URLRefusedError(f"{what}: {message}") from None
    return scheme, host, port, address


def request(method: str, url: str, *, what: str, allow_private: bool, max_bytes: int, sink: IO[bytes] | None = None,
            json_body: Any = None, timeout_s: float = 10.0, total_timeout_s: float = 600.0,
            max_redirects: int = 3) -> int:
    """Send `method url` under the guard; the response body (at most `max_bytes`) goes to `sink`.
    Returns the final HTTP status. Raises URLRefusedError for refused URLs, oversize bodies, timeouts and
    connection failures."""
    import httpx

    deadline = time.monotonic() + total_timeout_s
    timeout = httpx.Timeout(timeout_s)
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(max_redirects + 1):
            scheme, host, port, address = check_url(current, what=what, allow_private=allow_private)
            parts = urlsplit(current)
            target_host = f"[{address}]" if ":" in address else address
            target = f"{scheme}://{target_host}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
            headers = {"Host": host if parts.port is None else f"{host}:{parts.port}", "User-Agent": USER_AGENT}
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            try:
                with client.stream(method, target, headers=headers, extensions=extensions, json=json_body) as resp:
                    if resp.is_redirect and method == "GET":
                        location = resp.headers.get("location")
                        if not location:
                            raise URLRefusedError(f"{what}: redirected without a Location header")
                        try:
                            current = urljoin(current, location)
                        except ValueError:
                            raise URLRefusedError(f"{what}: redirected to an invalid URL {location[:80]!r}") from None
                        continue
                    size = 0
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise URLRefusedError(f"{what}: the response is over the {max_bytes} byte limit")
                        if time.monotonic() > deadline:
                            raise URLRefusedError(f"{what}: took longer than {total_timeout_s:g} s")
                        if sink is not None:
                            sink.write(chunk)
                    return resp.status_code
            except httpx.TimeoutException:
                raise URLRefusedError(f"{what}: timed out") from None
            except httpx.HTTPError as exc:
                raise URLRefusedError(f"{what}: request failed ({type(exc).__name__}: {exc})") from None
    raise URLRefusedError(f"{what}: redirected more than {max_redirects} times")
