"""The Qwen2-VL image processor of the multimodal families (jina-embeddings-v4, jina-reranker-m0).

* Pixel bounds as the reference uses them: a catalog row may fix them (`extra["image_pixels"] =
  (min, max)`), whatever the folder's `preprocessor_config.json` says. jina-reranker-m0's reference code
  forces 3,136..602,112 pixels in `compute_score`; the v4 `-vllm-*` repos ship a preprocessor allowing
  12,845,056 pixels while the main v4 repo caps lower, so their rows carry the main repo's bounds and the
  same image gives the same patch grid (and vector) on every v4 row (docs/checkpoints.md).
* Pillow is optional: the processor runs on Pillow (`pip install 'jinaserve[vision]'`). Without it the
  family loads for text and `None` is returned here; an image input then fails with `vision_missing()`,
  which names the extra to install.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..images import InvalidImageError

log = logging.getLogger("jinaserve.models.images")

VISION_EXTRA = "pip install 'jinaserve[vision]'"


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def folder_pixel_bounds(folder: Path) -> tuple[int, int] | None:
    """(min, max) pixels the folder's preprocessor_config.json allows, if it says."""
    try:
        cfg = json.loads((folder / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return None
    size = cfg.get("size") if isinstance(cfg.get("size"), dict) else {}
    lo = cfg.get("min_pixels", size.get("shortest_edge"))
    hi = cfg.get("max_pixels", size.get("longest_edge"))
    return (int(lo), int(hi)) if lo is not None and hi is not None else None


def load_image_processor(folder: Path, model_id: str, pixels: tuple[int, int] | None = None) -> Any | None:
    """The Pillow-backend Qwen2-VL image processor from `folder` (defaults when it has no
    preprocessor_config.json), with min/max pixels forced to `pixels` when given; None without Pillow."""
    if not pillow_available():
        log.info("%s: Pillow is not installed, so the model serves text only (%s adds images)", model_id,
                 VISION_EXTRA)
        return None
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    bounds = {"min_pixels": pixels[0], "max_pixels": pixels[1]} if pixels else {}
    if (folder / "preprocessor_config.json").is_file():
        processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder), **bounds)
    else:
        processor = Qwen2VLImageProcessorPil(**bounds)
    if pixels:
        lo, hi = processor.size.get("shortest_edge"), processor.size.get("longest_edge")
        if (lo, hi) != pixels:  # a transformers version that ignores the keyword: set the size itself
            processor.size = type(processor.size)(shortest_edge=pixels[0], longest_edge=pixels[1])
        own = folder_pixel_bounds(folder)
        if own is not None and own != pixels:
            log.info("%s: images resized to %d..%d pixels as the reference does (the folder's preprocessor "
                     "allows %d..%d)", model_id, pixels[0], pixels[1], own[0], own[1])
    return processor


def vision_missing(model_id: str) -> InvalidImageError:
    return InvalidImageError(f"Model {model_id!r} was loaded without image support because Pillow is not "
                             f"installed on the server: {VISION_EXTRA} and restart to embed images.")
