"""Throughput of the v4 family on the tiny checkpoint (CPU): texts/s and images/s through the engine.

    .venv/bin/python tests/v4/bench_v4.py [--threads 2] [--n 256]

Builds the tiny checkpoint in a temp folder, loads it in-process (same batcher as the server) and
times `encode_text` / `encode_image` / multi-vector on batches of generated inputs (after a warm-up).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tiny_v4 import build_tiny_v4, make_png

    from jinaserve import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_v4(Path(tmp) / "tiny-v4")
        emb = Embedder(f"jina-embeddings-v4={path}", device="cpu", threads=args.threads)
        words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "embeddings",
                 "share", "one", "space"]
        texts = [" ".join(words[(i % 7):(i % 7) + 5 + i % 9]) for i in range(args.n)]
        colors = [((37 * i) % 256, (91 * i) % 256, (53 * i) % 256) for i in range(args.n)]
        images = [make_png(size=(64 + (i % 3) * 16, 48 + (i % 2) * 16), color=c) for i, c in enumerate(colors)]
        emb.encode_text(texts[:8], task="retrieval.passage")
        emb.encode_image(images[:8], task="retrieval.passage")

        def rate(fn, items) -> float:
            best = 0.0
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn(items)
                best = max(best, len(items) / (time.perf_counter() - t0))
            return best

        text_rate = rate(lambda x: emb.encode_text(x, task="retrieval.passage"), texts)
        image_rate = rate(lambda x: emb.encode_image(x, task="retrieval.passage"), images)
        mv_rate = rate(lambda x: emb.encode_multivector(task="retrieval.passage", images=x), images)
        n_img_tokens = len(emb._service.family.image_prompt_ids((1, 4, 4))[0])
        emb.close()
    print(f"tiny jina-embeddings-v4 (hidden 64, 2+2 layers) on CPU, {args.threads} threads, n={args.n}, "
          f"best of {args.repeats}:")
    print(f"  texts/s            {text_rate:8.1f}")
    print(f"  images/s           {image_rate:8.1f}   (64x48..96x64 PNGs, e.g. {n_img_tokens} tokens for a 4x4 grid)")
    print(f"  images/s multi-vec {mv_rate:8.1f}")


if __name__ == "__main__":
    main()
