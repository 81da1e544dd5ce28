"""jinaserve.images: every source form, and every way an image input can be bad."""

from __future__ import annotations

import base64
import time

import pytest
from PIL import Image
from tiny_v4 import JPEG, PNG

from jinaserve.images import ImageFetchPolicy, InvalidImageError, load_image, load_images

OPEN = ImageFetchPolicy(allow_private=True, connect_timeout_s=2, read_timeout_s=1, total_timeout_s=2)


def test_base64_data_uri_bytes_and_url_forms_decode_to_the_same_pixels(image_http):
    b64 = base64.b64encode(PNG).decode()
    forms = [PNG, b64, f"data:image/png;base64,{b64}", "  " + b64[:40] + "\n" + b64[40:] + "  ",
             base64.urlsafe_b64encode(PNG).decode().rstrip("="), f"{image_http}/img.png",
             f"{image_http}/redirect"]
    images = load_images(forms, policy=OPEN)
    ref = Image.open(__import__("io").BytesIO(PNG)).convert("RGB")
    for img in images:
        assert img.mode == "RGB" and img.size == ref.size
        assert img.tobytes() == ref.tobytes()
    jpg = load_image(f"{image_http}/img.jpg", policy=OPEN)
    assert jpg.size == (90, 60)


def test_local_paths_and_pil_only_in_process(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    assert load_image(str(path), allow_local=True).size == (90, 60)
    pil = Image.new("RGBA", (8, 8))
    assert load_image(pil, allow_local=True).mode == "RGB"
    with pytest.raises(InvalidImageError, match="index 3"):
        load_image(pil, index=3)
    # over HTTP a path is just a string: it is never opened as a file
    with pytest.raises(InvalidImageError, match=r"index 0.*(base64|image source)"):
        load_image(str(path), index=0)
    with pytest.raises(InvalidImageError, match="does not exist"):
        load_image(str(tmp_path / "nope.png"), allow_local=True)
    with pytest.raises(InvalidImageError, match=r"'cat\.JPG' does not exist"):
        load_image("cat.JPG", allow_local=True)  # relative name, not found


@pytest.mark.parametrize(("source", "message"), [
    ("!!!not base64!!!", "not a valid image source"),
    ("aGVsbG8gd29ybGQ=", "not a decodable image"),  # valid base64 of "hello world"
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/png,rawdata", "not base64"),
    ("data:image/png;base64,@@@", "not a valid image source"),
    ("", "empty"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("ftp://example.com/a.png", "scheme 'ftp'"),
    (base64.b64encode(PNG[:60]).decode(), "corrupt or truncated|not a decodable"),
])
def test_bad_inline_images_name_the_index(source, message):
    with pytest.raises(InvalidImageError, match=r"Input at index 7: .*(" + message + ")"):
        load_image(source, index=7)


def test_size_limits():
    small = ImageFetchPolicy(max_bytes=200)
    with pytest.raises(InvalidImageError, match="larger than the 200 bytes limit"):
        load_image(base64.b64encode(PNG * 3).decode(), policy=small, index=0)
    with pytest.raises(InvalidImageError, match="over the 200 bytes limit"):
        load_image(PNG * 3, policy=small, index=0)
    with pytest.raises(InvalidImageError, match="pixels, over the limit"):
        load_image(PNG, policy=ImageFetchPolicy(max_pixels=100), index=0)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "169.254.169.254",
                                  "[::1]", "0.0.0.0", "[::ffff:127.0.0.1]", "100.64.0.1"])
def test_ssrf_guard_refuses_non_public_addresses(host):
    started = time.monotonic()
    with pytest.raises(InvalidImageError, match=r"index 2: .*address.*image_allow_private_urls"):
        load_image(f"http://{host}:9/x.png", index=2)  # default policy: guard on
    assert time.monotonic() - started < 2  # refused before any connection attempt


def test_url_failures_with_loopback_allowed(image_http):
    cases = {
        "/page.html": "content-type 'text/html'",
        "/fake.png": "not a decodable image",
        "/missing.png": "HTTP 404",
        "/loop": "redirected more than 3 times",
    }
    for path, message in cases.items():
        with pytest.raises(InvalidImageError, match=f"index 1: .*{message}"):
            load_image(image_http + path, policy=OPEN, index=1)
    with pytest.raises(InvalidImageError, match="over the 1 MB limit"):
        load_image(image_http + "/big-chunked", policy=ImageFetchPolicy(allow_private=True, max_bytes=1024 * 1024),
                   index=1)


def test_every_redirect_hop_is_checked_by_the_ssrf_guard(image_http, monkeypatch):
    """Guard on, but the first host (127.0.0.1) is treated as public: its redirect to 127.0.0.2 is refused."""
    import jinaserve.image_fetch as image_fetch  # the SSRF guard lives with the downloads

    original = image_fetch._address_refused
    monkeypatch.setattr(image_fetch, "_address_refused", lambda ip: None if str(ip) == "127.0.0.1" else original(ip))
    assert load_image(f"{image_http}/img.png", index=0).size == (64, 48)  # first hop alone is fetched
    with pytest.raises(InvalidImageError, match=r"index 4: .*'127\.0\.0\.2' resolves to a loopback address"):
        load_image(f"{image_http}/redirect-other-host", index=4)


@pytest.mark.parametrize(("path", "message"), [("/slow", "took longer than 2 s"), ("/stall", "timed out")])
def test_slow_servers_are_cut_off(image_http, path, message):
    started = time.monotonic()
    with pytest.raises(InvalidImageError, match=message):
        load_image(image_http + path, policy=OPEN, index=0)
    assert time.monotonic() - started < 4  # bounded by the policy, not by the server


def test_many_urls_fetch_concurrently_and_report_the_first_bad_index(image_http):
    sources = [f"{image_http}/img.png"] * 3 + [f"{image_http}/page.html", f"{image_http}/missing.png"]
    with pytest.raises(InvalidImageError, match="index 13"):
        load_images(sources, policy=OPEN, indices=[10, 11, 12, 13, 14])
    assert len(load_images(sources[:3], policy=OPEN)) == 3
