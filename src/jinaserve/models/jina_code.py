"""jina-code-embeddings-0.5b / -1.5b: a stock Qwen2 (Qwen2.5-Coder) backbone, natively.

No adapters: each task is an instruction prefix (catalog row, e.g. `nl2code.query` →
"Find the most relevant code snippet given the following query:\\n"), default `nl2code.query`.
Pooling: the last token, with left padding (as the model card's reference code does); the pooler
reads the mask, so the result does not depend on the padding side. The published config is a plain
`qwen2` config and the weights are `Qwen2Model`'s (with or without a `model.` prefix).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ..catalog import ModelSpec
from ..jobs import EmbedOptions
from .jina_v5 import checked_dims, load_backbone, load_tokenizer, native_config
from .loading import LoadOptions
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.jina_code")


class JinaCodeFamily(TextEmbeddingFamily):
    family_name = "jina_code"

    def check_embed_options(self, options: EmbedOptions) -> None:
        # The hosted schema of the code models has no `normalized` field (unknown fields are ignored):
        # their vectors are always unit length.
        options.normalized = True
        super().check_embed_options(options)

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaCodeFamily:
        from ..runtimes.torch_runtime import auto_cpu_dtype, configure_threads, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = native_config(folder, spec.extra.get("backbone", "qwen2"))
        model = load_backbone(folder, config, device=device, dtype=dtype)
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        padding_side = spec.extra.get("padding_side", "left")
        tokenizer = load_tokenizer(folder, config, padding_side)
        spec = replace(spec, dims=checked_dims(spec, config.hidden_size))
        log.info("loaded %s from %s (device=%s, dtype=%s)", spec.id, folder, device, dtype)
        return cls(spec, model, tokenizer, device=device, padding_side=padding_side)
