"""Real-size random-weight checkpoints for architectures whose real weights are not available here.

`python -m benchmarks.random_models cross-encoder DIR` writes a BERT sequence-classification
cross-encoder the size of ms-marco-MiniLM-L-6-v2 (6 layers, hidden 384, 12 heads, 512 positions,
1 label) with the MiniLM tokenizer. Speed depends on the shapes, not on the weight values.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .textgen import minilm_dir


def build_cross_encoder(dst: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    dst.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(dst)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, dst / name)
    return dst


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2 or args[0] != "cross-encoder":
        raise SystemExit("usage: python -m benchmarks.random_models cross-encoder DIR")
    build_cross_encoder(Path(args[1]))


if __name__ == "__main__":
    main()
