"""Issue 12 item 4: `pip install jinaserve` (no `[vision]` extra, so no Pillow) serves every text path.

A plain install is emulated by a Python started without `site` (`-S`) whose only site folder is a copy of
this environment's site-packages made of symlinks, minus Pillow: `importlib.util.find_spec("PIL")` is
None there, exactly as after `pip install jinaserve` (transformers then reports vision as unavailable).
In it, jina-embeddings-v4 and jina-reranker-m0 load and answer text requests with the same numbers as
here (with Pillow); an image request fails with a message that names the extra to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import ck_layouts as L
import numpy as np
import pytest

from jinaserve import Embedder, Reranker

TEXTS = ["a cat sits on a mat", "hello world"]
DOCS = ["the cat sat on a mat", "a dog ran to the park"]

SCRIPT = r"""
import importlib.util, json, site, sys
site.addsitedir(sys.argv[1])
assert importlib.util.find_spec("PIL") is None, "Pillow is importable"
from jinaserve import Embedder, Reranker
from jinaserve.errors import JinaServeError
from transformers.utils import is_vision_available
out = {"vision": is_vision_available()}
with Embedder("jina-embeddings-v4=" + sys.argv[2], device="cpu") as emb:
    out["v4"] = emb.encode(json.loads(sys.argv[4]), task="retrieval.query").tolist()
    try:
        emb.encode_image(b"\x89PNG\r\n\x1a\n", task="retrieval.passage")
    except JinaServeError as exc:
        out["image_error"] = [exc.status, exc.message]
with Reranker("jina-reranker-m0=" + sys.argv[3], device="cpu") as rr:
    out["m0"] = rr.score("cats", json.loads(sys.argv[5])).tolist()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def no_pillow_site(tmp_path_factory) -> Path:
    """This environment's site-packages as symlinks, without Pillow."""
    farm = tmp_path_factory.mktemp("site-without-pillow")
    purelib = Path(sysconfig.get_paths()["purelib"])
    for entry in purelib.iterdir():
        if entry.name.lower().startswith(("pil", "pillow")):
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def test_text_paths_work_without_pillow_and_images_name_the_extra(no_pillow_site, tmp_path):
    v4 = L.v4().build_tiny_v4(tmp_path / "v4")
    m0 = L.rr().build_tiny_m0(tmp_path / "m0")[0]
    proc = subprocess.run([sys.executable, "-S", "-c", SCRIPT, str(no_pillow_site), str(v4), str(m0),
                           json.dumps(TEXTS), json.dumps(DOCS)], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[len("RESULT "):])
    assert got["vision"] is False
    status, message = got["image_error"]
    assert status == 400 and "pip install 'jinaserve[vision]'" in message and "Pillow" in message
    with Embedder(f"jina-embeddings-v4={v4}", device="cpu") as emb:
        np.testing.assert_allclose(got["v4"], emb.encode(TEXTS, task="retrieval.query"), atol=1e-6)
    with Reranker(f"jina-reranker-m0={m0}", device="cpu") as rr:
        np.testing.assert_allclose(got["m0"], rr.score("cats", DOCS), atol=1e-6)
