"""Issue 11 item 1: image memory is bounded per request and per server, not only per image.

A real server process on a tiny jina-embeddings-v4, its RSS sampled with psutil every 20 ms:

* the issue's request — 16 base64 PNGs of 7,999 x 7,999 grey pixels (~77 KB each, 1.3 MB body) — is refused
  with a 413 naming `image_max_request_pixels` before anything is decoded: RSS does not move; and on a server
  whose per-request budget lets it through, its 16 images are decoded one at a time and shrunk at once, so
  RSS grows by about one decoded image (before the fix: +4.6 GB, 4 GB of it still held after);
* 16 PNGs of 3,999 x 3,999 (within the default per-request budget) are decoded one at a time and shrunk to
  the processor's bounds at once: peak RSS grows by far less than the 16 decoded images would take
  (~1 GB as RGB), and what is left after the request is small;
* the processed image tensors a model's queue holds are capped too (`max_queue_image_mb`): a request whose
  tensors alone pass it gets a 413, one that would pass it with what is queued a 429.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from ops_figures import record

from helpers import RunningServer, server_in_thread, server_process

MB = 2**20


def _grey_png_b64(side: int) -> str:
    from PIL import Image

    img = Image.new("L", (side, side), 128)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def v4_server(tiny_v4_path) -> Iterator[RunningServer]:
    with server_process("--models", f"v4={tiny_v4_path}", env={"JINASERVE_LOG_LEVEL": "warning"}) as srv:
        yield srv


def _post_measuring_rss(srv: RunningServer, body: dict) -> tuple[httpx.Response, float, float, float]:
    """POST `body`; returns the response and the server's RSS before, at its peak during, and 1 s after (MiB)."""
    proc = psutil.Process(srv.process.pid)
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = httpx.post(srv.url + "/v1/embeddings", json=body, timeout=300)
    finally:
        stop.set()
        sampler.join()
    time.sleep(1)
    return r, before / MB, peak[0] / MB, proc.memory_info().rss / MB


def _warm_up(srv: RunningServer) -> None:
    small = _grey_png_b64(300)
    r = httpx.post(srv.url + "/v1/embeddings", json={"model": "v4", "input": [{"image": small}] * 2}, timeout=120)
    assert r.status_code == 200, r.text


def test_issue_request_refused_before_decoding(v4_server):
    _warm_up(v4_server)
    huge = _grey_png_b64(7999)
    body = {"model": "v4", "input": [{"image": huge}] * 16}
    r, before, peak, after = _post_measuring_rss(v4_server, body)
    assert r.status_code == 413, r.text[:300]
    detail = r.json()["detail"]
    assert "image_max_request_pixels" in detail and "1,023,744,016 pixels" in detail
    record("image_budget_issue_request", body_mb=round(len(huge) * 16 / MB, 2), status=r.status_code,
           rss_before_mb=round(before), rss_peak_growth_mb=round(peak - before),
           rss_held_after_mb=round(after - before))
    assert peak - before < 64, (before, peak)


def test_issue_request_decoded_one_image_at_a_time_when_the_budget_allows(tiny_v4_path):
    env = {"JINASERVE_LOG_LEVEL": "warning", "JINASERVE_IMAGE_MAX_REQUEST_PIXELS": "2000000000"}
    with server_process("--models", f"v4={tiny_v4_path}", env=env) as srv:
        _warm_up(srv)
        huge = _grey_png_b64(7999)
        r, before, peak, after = _post_measuring_rss(srv, {"model": "v4", "input": [{"image": huge}] * 16})
    assert r.status_code == 200, r.text[:300]
    record("image_budget_issue_request_decoded", status=r.status_code, rss_before_mb=round(before),
           rss_peak_growth_mb=round(peak - before), rss_held_after_mb=round(after - before))
    assert peak - before < 200, (before, peak)  # one 64 MB greyscale buffer at a time, not 16 x 256 MB as RGB
    assert after - before < 96, (before, after)


def test_request_within_budget_decoded_one_image_at_a_time(v4_server):
    _warm_up(v4_server)
    big = _grey_png_b64(3999)  # 16 x 16 M pixels: within the default 256 M pixels per request
    body = {"model": "v4", "input": [{"image": big}] * 16}
    r, before, peak, after = _post_measuring_rss(v4_server, body)
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["data"]) == 16
    record("image_budget_16x16mp", status=r.status_code, rss_before_mb=round(before),
           rss_peak_growth_mb=round(peak - before), rss_held_after_mb=round(after - before),
           decoded_rgb_if_all_at_once_mb=round(16 * 3999 * 3999 * 4 / MB))
    # one 16 MB greyscale buffer at a time (plus the processor's small copies), never the 16 images at once
    assert peak - before < 200, (before, peak)
    assert after - before < 64, (before, after)


def test_queued_image_tensors_are_capped(tiny_v4_path):
    png = _grey_png_b64(200)  # the tiny v4 processor keeps 112 x 112 of it: ~0.3 MB of float32 patches
    with server_in_thread(models=[f"v4={tiny_v4_path}"], max_queue_image_mb=1) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "v4", "input": [{"image": png}] * 3}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "v4", "input": [{"image": png}] * 4}, timeout=60)
        assert r.status_code == 413, r.text[:300]
        assert "max_queue_image_mb=1" in r.json()["detail"]
