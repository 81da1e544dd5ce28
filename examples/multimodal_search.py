"""Text → image search with jina-embeddings-v4, in-process (no server).

    python examples/multimodal_search.py                       # real model, generated demo images
    python examples/multimodal_search.py --images a.jpg b.png https://example.com/c.jpg \
        --query "a red square" --query "green stripes"
    python examples/multimodal_search.py --multivector         # also late-interaction (MaxSim) scores
    python examples/multimodal_search.py --model jina-embeddings-v4=/path/to/folder --json

Images are embedded with task retrieval.passage, queries with retrieval.query; the single-vector score is
the cosine similarity, the multi-vector score the sum over query tokens of the best-matching image token.
The test suite runs this script on a tiny random-weight checkpoint (its rankings are then meaningless).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def demo_images(folder: Path) -> list[str]:
    """A few simple generated pictures (so the example needs no downloads besides the model)."""
    from PIL import Image, ImageDraw

    specs = {"red-square": ((220, 30, 30), "rectangle"), "green-circle": ((30, 170, 60), "ellipse"),
             "blue-stripes": ((40, 70, 220), "stripes")}
    paths = []
    for name, (color, shape) in specs.items():
        img = Image.new("RGB", (224, 224), "white")
        draw = ImageDraw.Draw(img)
        if shape == "rectangle":
            draw.rectangle([40, 40, 184, 184], fill=color)
        elif shape == "ellipse":
            draw.ellipse([40, 40, 184, 184], fill=color)
        else:
            for x in range(0, 224, 32):
                draw.rectangle([x, 0, x + 14, 224], fill=color)
        path = folder / f"{name}.png"
        img.save(path)
        paths.append(str(path))
    return paths


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Late-interaction score: Σ over query tokens of max cosine with any document token."""
    return float((query @ doc.T).max(axis=1).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="jina-embeddings-v4", help="catalog id, repo id, or NAME=FOLDER")
    parser.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cuda, mps or cpu")
    parser.add_argument("--images", nargs="*", help="image paths or URLs (default: generated demo images)")
    parser.add_argument("--query", action="append", help="a text query (repeatable)")
    parser.add_argument("--dimensions", type=int, default=None, help="Matryoshka truncation (e.g. 128)")
    parser.add_argument("--multivector", action="store_true", help="also rank with multi-vector MaxSim")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)

    from jinaserve import Embedder, cosine_similarity

    queries = args.query or ["a red square", "a green circle", "blue vertical stripes"]
    with tempfile.TemporaryDirectory() as tmp:
        images = args.images or demo_images(Path(tmp))
        with Embedder(args.model, device=args.device) as emb:
            image_vecs = emb.encode_image(images, task="retrieval.passage", dimensions=args.dimensions)
            query_vecs = emb.encode_text(queries, task="retrieval.query", dimensions=args.dimensions)
            scores = np.atleast_2d(cosine_similarity(query_vecs, image_vecs))
            mv_scores = None
            if args.multivector:
                q_mv = emb.encode_multivector(queries, task="retrieval.query")
                d_mv = emb.encode_multivector(task="retrieval.passage", images=images)
                mv_scores = np.array([[maxsim(q, d) for d in d_mv] for q in q_mv])
            device = emb.device

    results = []
    for qi, query in enumerate(queries):
        order = np.argsort(-scores[qi])[: args.top]
        hits = [{"image": Path(images[i]).name if not images[i].startswith("http") else images[i],
                 "score": round(float(scores[qi, i]), 4),
                 **({"maxsim": round(float(mv_scores[qi, i]), 3)} if mv_scores is not None else {})}
                for i in order]
        results.append({"query": query, "hits": hits})
    if args.json:
        print(json.dumps({"model": args.model, "device": device, "dims": int(image_vecs.shape[1]),
                          "results": results}))
    else:
        print(f"model {args.model} on {device}, {image_vecs.shape[1]}-d vectors, {len(images)} images")
        for r in results:
            print(f"\n{r['query']!r}")
            for rank, hit in enumerate(r["hits"], 1):
                extra = f"  maxsim {hit['maxsim']:.3f}" if "maxsim" in hit else ""
                print(f"  {rank}. {hit['image']:<20} cosine {hit['score']:+.4f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
