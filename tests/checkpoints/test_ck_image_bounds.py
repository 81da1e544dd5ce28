"""Issue 12 item 3: image pixel bounds as the reference uses them.

* jina-reranker-m0: the reference `compute_score` forces min 3,136 / max 602,112 pixels whatever the repo's
  preprocessor_config.json says, so a folder whose file says otherwise must still resize that way.
* jina-embeddings-v4 -vllm-* repos ship a preprocessor allowing 12,845,056 pixels, the main repo a lower
  cap: the same image must give the same patch grid and vector on both rows (the main repo's bounds).

The expected bounds are written out here (not imported from jinaserve).
"""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path

import ck_layouts as L
import numpy as np
import pytest

from jinaserve import Embedder, Reranker
from jinaserve.jobs import RerankDocument, RerankJob

M0_REFERENCE = (3136, 602112)  # jina-reranker-m0 modeling.py, compute_score(): min_pixels, max_pixels
V4_MAIN_REPO = (3136, 602112)  # the main jina-embeddings-v4 repo's cap, which the -vllm-* rows must use


def big_png(size=(1000, 760)) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (30, 90, 200))
    draw = ImageDraw.Draw(img)
    for i in range(0, size[0], 40):
        draw.rectangle([i, (i * 3) % size[1], i + 20, size[1]], fill=((i * 7) % 255, 200, (i * 3) % 255))
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def set_bounds(folder: Path, lo: int, hi: int) -> None:
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    cfg.update({"min_pixels": lo, "max_pixels": hi})
    (folder / "preprocessor_config.json").write_text(json.dumps(cfg))


def bounds(processor) -> tuple[int, int]:
    return int(processor.size["shortest_edge"]), int(processor.size["longest_edge"])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ck-bounds")
    m0 = L.rr().build_tiny_m0(root / "m0")[0]
    m0_wide = L.copy(m0, root / "m0-wide")
    set_bounds(m0_wide, 3136, 12845056)
    v4 = L.v4().build_tiny_v4(root / "v4")
    set_bounds(v4, *V4_MAIN_REPO)  # the main repo's preprocessor
    vllm = L.v4_vllm(v4, root / "v4-vllm", "retrieval")  # ships 3136..12845056
    return {"m0": m0, "m0-wide": m0_wide, "v4": v4, "v4-vllm": vllm}


def test_m0_forces_the_reference_bounds_whatever_the_file_says(folders):
    image = "data:image/png;base64," + base64.b64encode(big_png()).decode()
    scores = []
    for name in ("m0", "m0-wide"):
        with Reranker(f"jina-reranker-m0={folders[name]}", device="cpu") as rr:
            assert bounds(rr._service.family.image_processor) == M0_REFERENCE
            job = RerankJob("m0", "blue stripes", [RerankDocument(image=image)])
            plan = rr._service.family.plan_rerank(job)
            assert plan.items[0].n_tokens < 602112 // (28 * 28) + 64  # at most ~768 visual tokens
            scores.append(rr._service.rerank_sync(job).scores[0])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def test_v4_vllm_rows_use_the_main_repo_bounds(folders):
    assert json.loads((folders["v4-vllm"] / "preprocessor_config.json").read_text())["max_pixels"] == 12845056
    img = big_png()
    with Embedder(f"jina-embeddings-v4={folders['v4']}", device="cpu") as main, \
            Embedder(f"jina-embeddings-v4-vllm-retrieval={folders['v4-vllm']}", device="cpu") as vllm:
        assert bounds(main._service.family.image_processor) == V4_MAIN_REPO
        assert bounds(vllm._service.family.image_processor) == V4_MAIN_REPO
        from PIL import Image

        pil = Image.open(BytesIO(img)).convert("RGB")
        grids = [e._service.family.preprocess_image(pil)[1] for e in (main, vllm)]
        assert grids[0] == grids[1]
        a = main.encode_image(img, task="retrieval.passage")
        b = vllm.encode_image(img, task="retrieval.passage")
    # merged LoRA (vllm) vs LoRA side path (main): fp32 on CPU, as tests/v4 compare them
    np.testing.assert_allclose(a, b, atol=2e-5)
