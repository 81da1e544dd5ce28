"""jina-embeddings-v2 (base-en/-de/-es/-zh/-code, small-en): JinaBERT with mean pooling, fp32 only.

The backbone is `jinabert.JinaBertModel` (in-project, no `trust_remote_code`). v2 has no tasks and
no `dimensions` in the hosted API, which ignores unknown fields: a `task` sent anyway (pymilvus does)
is ignored by the shared option check, and `dimensions` is ignored here (full 768-d vectors).
fp16/bf16 give NaNs with ALiBi over long inputs, so the backbone always runs in fp32.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..catalog import ModelSpec
from ..jobs import EmbedOptions
from .jina_v5 import checked_dims
from .jinabert import JinaBertModel
from .loading import LoadOptions
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.jina_v2")


class JinaV2Family(TextEmbeddingFamily):
    family_name = "jina_v2"

    def check_embed_options(self, options: EmbedOptions) -> None:
        # The hosted v2 schema has no `dimensions` (nor `task`): unknown fields are ignored there, so a
        # client that sends them gets the full 768-d vector. Same here.
        options.dimensions = None
        super().check_embed_options(options)

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaV2Family:
        from transformers import AutoTokenizer

        from ..runtimes.torch_runtime import configure_threads, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=True)
        model = JinaBertModel.from_folder(folder, dtype=dtype, device=device)
        tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))
        spec = replace(spec, dims=checked_dims(spec, model.config.hidden_size))
        log.info("loaded %s from %s (JinaBERT%s, device=%s, dtype=%s)", spec.id, folder,
                 " qk-post-norm" if model.config.qk_post_norm else "", device, dtype)
        return cls(spec, model, tokenizer, device=device, pooling="mean", padding_side="right")
