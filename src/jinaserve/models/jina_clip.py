"""jina-clip-v1 / jina-clip-v2: a text tower and an EVA02 vision tower embedding into one space (no remote code).

Published checkpoint (`config.json` `model_type: jina_clip`, `architectures: [JinaCLIPModel]`; one weight file):

* `text_model.transformer.*` — the text backbone. Its architecture config is NOT in the folder: the published
  `text_config.hf_model_name_or_path` names another repo (`jinaai/jina-bert-flash-implementation` for v1,
  `jinaai/jina-embeddings-v3` for v2) whose config.json is updated with `text_config.hf_model_config_kwargs`.
  The catalog row carries those published defaults (`extra["text_defaults"]`); sizes (vocabulary, width, layers,
  MLP width) are read from the weight shapes and the head count is width / 64 unless the kwargs name one.
  - v1: JinaBERT (ALiBi, GLU MLP; `models/jinabert.py`), fp32 only.
  - v2: Jina-XLM-RoBERTa with RoPE in the remote-code "flash" layout (`roberta.` prefix, fused `mixer.Wqkv`,
    parametrised weights with stacked LoRA factors; mapped by `jina_v3_layout`). Its kwargs list one LoRA
    (`lora_adaptations: [retrieval.query]`) and `text_config.default_lora_task` selects it, so the reference
    applies that LoRA to EVERY text (queries and documents): it is merged into the weights at load time.
* text pooling: `text_config.pooler_type` (v2 publishes `mean_pooler`: mean over the attention mask; the
  reference's default is CLS for BERT-type and mean for XLM-R-type backbones), then `text_model.proj`
  (Identity when the width equals `embed_dim` and `proj_type` is null; Linear or 2-layer GELU MLP otherwise).
* `vision_model.*` — EVA02 (`models/eva_vision.py`); the image vector is its CLS token after the final norm.
* `text_projection` / `visual_projection` (Linear, no bias) only when `add_projections` is true.
* Images: `preprocessor_config.json` (`models/clip_image.py`), loaded through `jinaserve.images` exactly as v4
  (URL with SSRF guard, base64, data URI, `{"image"|"url"|"bytes"}`; local paths in-process only).

Tasks (hosted API): v2 has only `retrieval.query`, which puts "Represent the query for retrieving evidence
documents: " in front of query text; no task = no prefix (documents). Images never get a prefix. v1 has no task.
Matryoshka (v2): the service cuts the vector to `dimensions` and normalises again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..catalog import ModelSpec
from ..errors import InvalidInputError, ModelLoadError
from ..images import DownscaleTarget, ImageFetchPolicy, load_images
from ..jobs import EmbedInput, EmbedOptions
from ..runtimes.torch_runtime import pad_batch
from .base import EmbedPlan, WorkItem
from .clip_image import ClipImageConfig, clip_pixels
from .eva_vision import EvaVisionTransformer
from .jinabert import JinaBertModel, split_state
from .loading import LoadOptions
from .pooling import pool
from .text import check_token_ids, tokenize
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.jina_clip")

TEXT, IMAGE = "text", "image"  # batch groups: a batch is all text or all images
_POOLERS = {"mean_pooler": "mean", "cls_pooler": "cls", "max_pooler": "max"}


@dataclass
class ClipPayload:
    ids: list[int] | None = None
    pixels: np.ndarray | None = None  # (3, S, S)


class JinaCLIPFamily(TextEmbeddingFamily):
    family_name = "jina_clip"
    embeds_images = True  # text and images in one space: embeddings, cosine rerank with image documents

    def __init__(self, spec: ModelSpec, text_model: Any, tokenizer: Any, *, text_kind: str, text_head: nn.Module,
                 vision: EvaVisionTransformer, vision_head: nn.Module, image_config: ClipImageConfig,
                 device: str = "cpu", image_policy: ImageFetchPolicy | None = None,
                 max_tokens: int | None = None, pooling: str = "mean") -> None:
        super().__init__(spec, text_model, tokenizer, device=device, pooling=pooling, padding_side="right",
                         max_tokens=max_tokens)
        self.text_kind = text_kind
        self.text_head = text_head
        self.vision = vision
        self.vision_head = vision_head
        self.image_config = image_config
        # images are shrunk while decoding, never below what the CLIP resize keeps (its shorter side)
        self.image_policy = replace(image_policy or ImageFetchPolicy(),
                                    target=DownscaleTarget(short_edge=image_config.size))
        self.image_tokens = 1 + vision.config.grid ** 2  # counted as the image's tokens (usage, batch budget)

    def check_embed_options(self, options: EmbedOptions) -> None:
        if self.spec.extra.get("ignore_dimensions"):
            options.dimensions = None  # the hosted jina-clip-v1 schema has no `dimensions`: ignored, full vector
        super().check_embed_options(options)

    # ----------------------------------------------------------------- planning
    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        task = self.resolve_task(options.task)
        prefix = self.prefix_for(task)
        payloads: list[ClipPayload] = [ClipPayload() for _ in inputs]
        text_idx = [i for i, x in enumerate(inputs) if x.image is None and x.token_ids is None]
        texts = [prefix + (inputs[i].text or "") for i in text_idx]
        for i, ids in zip(text_idx, tokenize(self.tokenizer, texts, max_tokens=self.max_tokens,
                                             truncate=options.truncate, indices=text_idx), strict=True):
            payloads[i].ids = ids
        for i, x in enumerate(inputs):
            if x.token_ids is not None:
                payloads[i].ids = check_token_ids(x.token_ids, vocab_size=self.vocab_size,
                                                  max_tokens=self.max_tokens, truncate=options.truncate, index=i)
        image_idx = [i for i, x in enumerate(inputs) if x.image is not None]
        if image_idx:
            images = load_images([inputs[i].image for i in image_idx], policy=self.image_policy,
                                 indices=image_idx, allow_local=options.in_process)
            for i, img in zip(image_idx, images, strict=True):
                try:
                    payloads[i].pixels = clip_pixels(img, self.image_config)
                except (ValueError, OSError) as exc:
                    raise InvalidInputError(f"Input at index {i}: the image cannot be processed ({exc})") from None
        items = [WorkItem(p, len(p.ids), TEXT) if p.ids is not None
                 else WorkItem(p, self.image_tokens, IMAGE, nbytes=p.pixels.nbytes) for p in payloads]
        return EmbedPlan(items, sum(it.n_tokens for it in items), lambda outs: list(outs))

    # ----------------------------------------------------------------- execution
    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       group: Hashable) -> torch.Tensor:
        if self.text_kind == "jinabert":
            return self.model(input_ids, attention_mask)
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        if payloads[0].pixels is not None:
            pixels = torch.from_numpy(np.stack([p.pixels for p in payloads])).to(self.device)
            out = self.vision_head(self.vision(pixels))
        else:
            input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
            out = self.text_head(pool(self.pooling, self.forward_hidden(input_ids, mask, TEXT), mask))
        return list(out.float().cpu().numpy())

    def close(self) -> None:
        self.model = None
        self.vision = None  # type: ignore[assignment]

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaCLIPFamily:
        from transformers import AutoTokenizer, PretrainedConfig

        from ..runtimes.torch_runtime import configure_threads, select_device, select_dtype
        from .jina_v3_layout import read_weight_files

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "jina_clip":
            raise ModelLoadError(f"{folder} is not a jina-clip checkpoint (config model_type "
                                 f"{config.get('model_type')!r}, expected 'jina_clip')")
        state = read_weight_files(folder)
        parts: dict[str, dict[str, torch.Tensor]] = {"text_model.transformer.": {}, "vision_model.": {},
                                                     "text_model.proj.": {}, "": {}}
        for key, value in state.items():
            prefix = next(p for p in parts if key.startswith(p))
            parts[prefix][key[len(prefix):]] = value
        text_cfg = config.get("text_config") or {}
        vision_cfg = config.get("vision_config") or {}
        kind = str(spec.extra.get("text_backbone", "jinabert"))
        source = str(folder)
        try:
            if kind == "jinabert":
                text_model, width = _jinabert_tower(spec, text_cfg, parts["text_model.transformer."], dtype, device,
                                                    source)
            else:
                text_model, width = _xlmr_tower(spec, text_cfg, parts["text_model.transformer."], dtype, device,
                                                source)
            vision = EvaVisionTransformer.from_state(vision_cfg, parts["vision_model."], dtype=dtype, device=device,
                                                     source=source)
            embed_dim = int(text_cfg.get("embed_dim", width))
            text_head = _text_projection(text_cfg, parts["text_model.proj."], width, embed_dim)
            text_head, vision_head, dims = _clip_projections(config, parts[""], text_head, embed_dim)
            image_config = ClipImageConfig.from_folder(folder, vision.config.image_size)
        except (ValueError, KeyError) as exc:
            raise ModelLoadError(f"{spec.id}: {exc}") from exc
        if image_config.size != vision.config.image_size:
            raise ModelLoadError(f"{folder}: preprocessor size {image_config.size} differs from the vision tower's "
                                 f"image_size {vision.config.image_size}")
        text_head.to(device=device, dtype=dtype).eval()
        vision_head.to(device=device, dtype=dtype).eval()
        # an empty config: `jina_clip` is not a transformers model type (loading it would ask for remote code)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), config=PretrainedConfig())
        max_pos = int(getattr(getattr(text_model, "config", None), "max_position_embeddings", 0) or 0)
        max_tokens = min(spec.max_tokens, max_pos - 2) if kind != "jinabert" and max_pos > 2 else spec.max_tokens
        spec = replace(spec, dims=dims, max_tokens=max_tokens)
        log.info("loaded %s from %s (text %s, vision EVA02 %d×%d/%d, %d layers, dims=%d, device=%s, dtype=%s)",
                 spec.id, folder, kind, vision.config.image_size, vision.config.image_size, vision.config.patch_size,
                 vision.config.layers, dims, device, dtype)
        # the reference's text pooler: `pooler_type`, else its default for the backbone (BERT: CLS, XLM-R: mean)
        pooler = text_cfg.get("pooler_type") or ("cls_pooler" if kind == "jinabert" else "mean_pooler")
        if pooler not in _POOLERS:
            raise ModelLoadError(f"{spec.id}: unsupported text pooler_type {pooler!r} ({', '.join(_POOLERS)})")
        return cls(spec, text_model, tokenizer, text_kind=kind, text_head=text_head, vision=vision,
                   vision_head=vision_head, image_config=image_config, device=device,
                   image_policy=opts.image_policy, max_tokens=max_tokens, pooling=_POOLERS[pooler])


# ---------------------------------------------------------------------------------------------- text towers
def _tower_config(spec: ModelSpec, text_cfg: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """Published defaults of the referenced text repo ← `hf_model_config_kwargs` ← sizes read from the weights."""
    kwargs = dict(text_cfg.get("hf_model_config_kwargs") or {})
    cfg = {**dict(spec.extra.get("text_defaults") or {}), **kwargs, **sizes}
    cfg["num_attention_heads"] = int(kwargs.get("num_attention_heads") or
                                     sizes["hidden_size"] // int(spec.extra.get("text_head_dim", 64)))
    return cfg


def _count_layers(state: dict[str, torch.Tensor], marker: str) -> int:
    return len({k.split(marker, 1)[1].split(".", 1)[0] for k in state if marker in k})


def _jinabert_tower(spec: ModelSpec, text_cfg: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype,
                    device: str, source: str) -> tuple[JinaBertModel, int]:
    backbone, _ = split_state(state)
    if not backbone:
        raise ValueError("no text_model.transformer weights in the JinaBERT layout")
    words = backbone["embeddings.word_embeddings.weight"]
    types = backbone.get("embeddings.token_type_embeddings.weight")
    gated = next(v for k, v in backbone.items() if k.endswith((".mlp.gated_layers.weight",
                                                               ".mlp.up_gated_layer.weight")))
    layers = _count_layers(backbone, "encoder.layer.") or _count_layers(backbone, "encoder.layers.")
    sizes = {"vocab_size": int(words.shape[0]), "hidden_size": int(words.shape[1]), "num_hidden_layers": layers,
             "intermediate_size": int(gated.shape[0]) // 2}
    if types is not None:
        sizes["type_vocab_size"] = int(types.shape[0])
    model = JinaBertModel.from_state(_tower_config(spec, text_cfg, sizes), backbone, dtype=dtype, device=device,
                                     source=source)
    return model, sizes["hidden_size"]


def _xlmr_tower(spec: ModelSpec, text_cfg: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype,
                device: str, source: str) -> tuple[Any, int]:
    from .jina_v3_layout import build_native_model, convert_remote_state, native_config_from_remote

    words = next((v for k, v in state.items() if k.endswith("embeddings.word_embeddings.weight") or
                  k.endswith("embeddings.word_embeddings.parametrizations.weight.original")), None)
    fc1 = next((v for k, v in state.items() if ".mlp.fc1." in k and k.endswith(("fc1.weight", ".original"))), None)
    if words is None or fc1 is None:
        raise ValueError("no text_model.transformer weights in the Jina-XLM-RoBERTa layout")
    sizes = {"vocab_size": int(words.shape[0]), "hidden_size": int(words.shape[1]),
             "num_hidden_layers": _count_layers(state, "encoder.layers."), "intermediate_size": int(fc1.shape[0])}
    cfg = _tower_config(spec, text_cfg, sizes)
    adaptations = list(cfg.get("lora_adaptations") or [])
    native, adapters = convert_remote_state(state, adaptations, float(cfg.get("lora_alpha", 1.0)))
    task = text_cfg.get("default_lora_task")
    if task is not None and adapters.get(task):  # the reference applies this LoRA to every text: merge it
        for module, lora in adapters[task].items():
            key = f"{module}.weight"
            native[key] = (native[key].float() + lora.delta()).to(native[key].dtype)
    model = build_native_model(native_config_from_remote(cfg), native, device=device, dtype=dtype)
    return model, sizes["hidden_size"]


def _text_projection(text_cfg: dict[str, Any], state: dict[str, torch.Tensor], width: int,
                     embed_dim: int) -> nn.Module:
    """`text_model.proj`: Identity, Linear or Linear-GELU-Linear (as the reference's HF text encoder builds it)."""
    proj_type, bias = text_cfg.get("proj_type"), bool(text_cfg.get("proj_bias", False))
    if width == embed_dim and proj_type is None:
        head: nn.Module = nn.Identity()
    elif proj_type == "mlp":
        mid = (width + embed_dim) // 2
        head = nn.Sequential(nn.Linear(width, mid, bias=bias), nn.GELU(), nn.Linear(mid, embed_dim, bias=bias))
    else:
        head = nn.Linear(width, embed_dim, bias=bias)
    _load_exact(head, state, "text_model.proj")
    return head


def _clip_projections(config: dict[str, Any], state: dict[str, torch.Tensor], text_head: nn.Module,
                      embed_dim: int) -> tuple[nn.Module, nn.Module, int]:
    """`text_projection` / `visual_projection` (Linear, no bias) when `add_projections`; else identities."""
    if not config.get("add_projections"):
        return text_head, nn.Identity(), embed_dim
    dims = int(config.get("projection_dim", embed_dim))
    vision_dim = int((config.get("vision_config") or {}).get("embed_dim", embed_dim))
    text_projection, visual_projection = nn.Linear(embed_dim, dims, bias=False), nn.Linear(vision_dim, dims, bias=False)
    _load_exact(text_projection, {k.removeprefix("text_projection."): v for k, v in state.items()
                                  if k.startswith("text_projection.")}, "text_projection")
    _load_exact(visual_projection, {k.removeprefix("visual_projection."): v for k, v in state.items()
                                    if k.startswith("visual_projection.")}, "visual_projection")
    return nn.Sequential(text_head, text_projection), visual_projection, dims


def _load_exact(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{name} does not fit the config (missing {result.missing_keys[:3]}, unexpected "
                         f"{result.unexpected_keys[:3]})")
    for p in module.parameters():
        p.requires_grad_(False)
