"""jina-embeddings-v4: Qwen2.5-VL-3B (native transformers `qwen2_5_vl`, no remote code) + task LoRAs.

Facts this family implements (research notes §4, §6.1; the published modeling code):

* Text is embedded as ``<prefix><text>`` with no chat template: ``Query: `` for retrieval.query,
  text-matching and code.query, ``Passage: `` for retrieval.passage and code.passage.
* An image is embedded with the prompt
  ``<|im_start|>user\\n<|vision_start|><|image_pad|>…<|vision_end|>Describe the image.<|im_end|>\\n``
  where ``<|image_pad|>`` is repeated once per merged vision patch (t·h·w / merge²) from the
  Qwen2-VL image processor. Images take the task's LoRA but no text prefix.
* Single vector: mean of the last hidden states over the attention mask; for images only over the
  span from ``<|vision_start|>`` to ``<|vision_end|>`` (both included). The service truncates to
  ``dimensions`` and L2-normalises.
* Multi-vector: ``multi_vector_projector`` (Linear hidden→128 with bias, which also carries the task
  LoRA) applied to every non-pad token, each row L2-normalised.
* Three LoRA adapters (retrieval, text-matching, code) live in ONE PEFT folder ``adapters/``; the
  remote code's ``MultiAdapterLinear`` stores them as
  ``base_model.model.<module>.lora_A.<task>.weight`` / ``lora_B.<task>.weight`` with one
  ``lora_alpha``/``r`` in ``adapters/adapter_config.json``. Module names may use the legacy
  Qwen2.5-VL layout (``model.layers.*``, ``visual.*``) or the current one; both are mapped.
* The base checkpoint is in the legacy key layout; transformers' own conversion mapping loads it into
  ``Qwen2_5_VLForConditionalGeneration``. ``multi_vector_projector.*`` is read separately.
* ``late_chunking`` (text only, as the hosted v4 schema allows): the v3 procedure of research §2.3 with
  v4's prefix — inputs joined with one space, the task prefix in front, one pass, each input's token span
  mean-pooled (the first span also takes the prefix tokens). Over-length: 400 unless ``truncate=true``,
  which packs whole inputs into windows (`jina_v3.late_chunk_windows`).
* ``jina-embeddings-v4-vllm-<task>`` repos have the task's LoRA merged and no projector: same family
  with no adapters (catalog rows whose tasks carry ``adapter=None``).

The LoRAs run as low-rank side paths (``y = Wx + s·B(Ax)``) selected per batch: the batcher never mixes
adapters in one batch, so the worker thread sets the active task once before each forward.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..catalog import ModelSpec
from ..catalog.jina_v4 import V4_REFERENCE_PIXELS
from ..errors import FieldError, InvalidInputError, ModelLoadError, TokenLimitExceededError, ValidationFailedError
from ..images import ImageFetchPolicy, load_images
from ..jobs import EmbedInput, EmbedOptions, RerankJob, RerankResult
from .base import EmbedPlan, RerankPlan, WorkItem
from .image_processing import folder_pixel_bounds, load_image_processor, vision_missing
from .loading import LoadOptions
from .text import check_token_ids, tokenize
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.jina_v4")

IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.(?P<task>[^.]+)\.(?P<kind>weight|bias)$")


# --------------------------------------------------------------------------- payloads
@dataclass
class V4Payload:
    ids: list[int]
    group: Hashable = None  # adapter name (None: no adapter / merged checkpoint)
    multivector: bool = False
    pixel_values: np.ndarray | None = None  # (patches, C·T·P·P) from the image processor
    grid_thw: tuple[int, int, int] | None = None
    span: tuple[int, int] | None = None  # inclusive token range pooled for images
    spans: list[tuple[int, int]] | None = None  # late chunking: [start, end) per input of one joined text


# --------------------------------------------------------------------------- LoRA side paths
class _ActiveTask:
    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name: Hashable = None


class TaskLoRALinear(nn.Module):
    """A frozen Linear plus per-task low-rank deltas; the shared `_ActiveTask` picks one per forward."""

    def __init__(self, base: nn.Linear, active: _ActiveTask) -> None:
        super().__init__()
        self.base = base
        self.active = active
        self.scaling: dict[Hashable, float] = {}
        self.lora_a: dict[Hashable, torch.Tensor] = {}
        self.lora_b: dict[Hashable, torch.Tensor] = {}
        self.lora_bias: dict[Hashable, torch.Tensor] = {}

    @property
    def weight(self) -> torch.Tensor:  # code that inspects `.weight` (dtype / device) keeps working
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def add(self, task: Hashable, a: torch.Tensor, b: torch.Tensor, scaling: float,
            bias: torch.Tensor | None = None) -> None:
        w = self.base.weight
        if a.shape != (a.shape[0], self.base.in_features) or b.shape != (self.base.out_features, a.shape[0]):
            raise ModelLoadError(f"LoRA shapes A{tuple(a.shape)} B{tuple(b.shape)} do not fit Linear "
                             f"{self.base.in_features}→{self.base.out_features}")
        self.lora_a[task] = a.to(device=w.device, dtype=w.dtype)
        self.lora_b[task] = b.to(device=w.device, dtype=w.dtype)
        self.scaling[task] = float(scaling)
        if bias is not None:
            self.lora_bias[task] = bias.to(device=w.device, dtype=w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        task = self.active.name
        a = self.lora_a.get(task)
        if a is None:
            return y
        delta = F.linear(F.linear(x.to(a.dtype), a), self.lora_b[task])
        bias = self.lora_bias.get(task)
        if bias is not None:
            delta = delta + bias
        return y + (delta * self.scaling[task]).to(y.dtype)


def _canonical_module(name: str) -> str:
    """Adapter module path → transformers-5 `Qwen2_5_VLForConditionalGeneration` module path."""
    name = name.removeprefix("base_model.model.")
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model.") and not name.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + name[len("model."):]
    return name


# Adapter modules that may map to nothing in the embedding model: the language-model head, which an
# embedding never runs (the backbone is loaded without using it). Any other unmapped module fails the load.
HARMLESS_UNMAPPED = ("lm_head",)


def _maps_to_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def read_multitask_lora(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{module: {task: {"A", "B"[, "bias"], "scale"}}} from the single PEFT folder of v4.

    The rank is read from each A matrix (so `rank_pattern` needs no parsing); alpha is `lora_alpha`, or
    the `alpha_pattern` entry whose key ends the module name; scale = alpha / r (alpha / √r for rsLoRA)."""
    cfg_file = folder / "adapter_config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"{folder} has no adapter_config.json: jina-embeddings-v4 keeps its task LoRAs "
                                f"in one PEFT folder 'adapters/'")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
        raise ModelLoadError(f"{folder}: only plain LoRA adapters are supported")
    default_alpha = float(cfg.get("lora_alpha", cfg.get("r", 8)))
    alpha_pattern: dict[str, float] = cfg.get("alpha_pattern") or {}
    rslora = bool(cfg.get("use_rslora"))
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        raw = load_file(str(weights))
    else:
        raw = torch.load(str(folder / "adapter_model.bin"), map_location="cpu", weights_only=True)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    unknown = sorted(key for key in raw if _LORA_KEY.match(key) is None)
    if unknown:
        raise ModelLoadError(f"{folder}: {len(unknown)} adapter tensors are not LoRA factors of the form "
                             f"'<module>.lora_A.<task>.weight' / 'lora_B.<task>.weight|bias': {unknown[:8]}; "
                             f"only plain LoRA adapters are supported")
    for key, value in raw.items():
        m = _LORA_KEY.match(key)
        assert m is not None
        module = _canonical_module(m["module"])
        slot = "bias" if m["kind"] == "bias" else m["ab"]
        if slot == "bias" and m["ab"] == "A":
            continue
        out.setdefault(module, {}).setdefault(m["task"], {})[slot] = value
    if not out:
        raise ModelLoadError(f"{folder}: no LoRA weights of the form '<module>.lora_A.<task>.weight'")
    for module, tasks in out.items():
        for task, ab in tasks.items():
            if "A" not in ab or "B" not in ab:
                raise ModelLoadError(f"{folder}: LoRA pair of {module!r} for task {task!r} is incomplete")
    for module, tasks in out.items():
        alpha = next((float(v) for k, v in alpha_pattern.items() if re.search(rf"(^|\.){k}$", module)),
                     default_alpha)
        for ab in tasks.values():
            r = int(ab["A"].shape[0])
            ab["scale"] = alpha / (r ** 0.5) if rslora else alpha / r
    return out


def attach_lora(model: nn.Module, projector: nn.Linear | None, folder: Path, tasks: Sequence[str],
                active: _ActiveTask) -> tuple[nn.Linear | None, int]:
    """Wrap every adapted Linear of `model` (and the projector) with `TaskLoRALinear`.

    Returns (possibly wrapped projector, number of wrapped modules)."""
    loras = read_multitask_lora(folder)
    available = {t for per in loras.values() for t in per}
    missing = [t for t in tasks if t not in available]
    if missing:
        raise ModelLoadError(f"{folder}: no LoRA weights for task(s) {missing}; the adapter has {sorted(available)}")
    unmapped = [m for m in loras if not _maps_to_module(model, m) and not m.endswith("multi_vector_projector")]
    harmful = [m for m in unmapped if not m.startswith(HARMLESS_UNMAPPED)]
    if harmful:
        raise ModelLoadError(f"{folder}: {len(harmful)} adapter modules map to no module of the model, so their "
                             f"LoRA would be silently dropped: {harmful[:8]}. The adapter does not belong to this "
                             f"checkpoint (or uses module names jinaserve does not know); nothing was loaded.")
    if unmapped:  # only modules the embedding path never runs (documented in HARMLESS_UNMAPPED)
        log.info("%s: LoRA weights of %d modules outside the embedding path are not needed: %s", folder,
                 len(unmapped), unmapped[:3])
    count = 0
    for module, per_task in loras.items():
        if module in unmapped:
            continue
        if module.endswith("multi_vector_projector"):
            if projector is None:  # a row without multi-vector output does not load the projector
                continue
            wrapper = projector if isinstance(projector, TaskLoRALinear) else TaskLoRALinear(projector, active)
            projector = wrapper
        else:
            target = model.get_submodule(module)
            if isinstance(target, TaskLoRALinear):
                wrapper = target
            elif isinstance(target, nn.Linear):
                wrapper = TaskLoRALinear(target, active)
                parent_name, _, child = module.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapper)
            else:
                raise ModelLoadError(f"adapter targets {module!r}, which is a {type(target).__name__}, not a Linear")
        for task, ab in per_task.items():
            if task in tasks:
                wrapper.add(task, ab["A"], ab["B"], float(ab["scale"]), ab.get("bias"))
        count += 1
    if count == 0:
        raise ModelLoadError(f"{folder}: none of the LoRA target modules exist in the model")
    return projector, count


# --------------------------------------------------------------------------- the family
class JinaV4Family(TextEmbeddingFamily):
    family_name = "jina_v4"
    embeds_images = True
    int8_capable = False  # task LoRA patches the torch weights per batch

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, image_processor: Any, *, device: str,
                 projector: nn.Module | None, active: _ActiveTask, image_policy: ImageFetchPolicy | None = None,
                 max_tokens: int | None = None) -> None:
        super().__init__(spec, model, tokenizer, device=device, pooling="mean", padding_side="right",
                         max_tokens=max_tokens)
        self.image_processor = image_processor
        self.projector = projector
        self.active = active
        self.image_policy = (image_policy or ImageFetchPolicy()).for_processor(image_processor)
        cfg = model.config
        self.image_token_id = int(cfg.image_token_id)
        self.vision_start_id = int(cfg.vision_start_token_id)
        self.vision_end_id = int(cfg.vision_end_token_id)
        self.merge_size = int(getattr(image_processor, "merge_size", 2) or 2)
        prompt_ids = tokenizer(IMAGE_PROMPT, add_special_tokens=False)["input_ids"]
        if prompt_ids.count(self.image_token_id) != 1:
            raise ModelLoadError("the tokenizer does not map <|image_pad|> to the config's image_token_id")
        pad_at = prompt_ids.index(self.image_token_id)
        self._image_head = list(prompt_ids[:pad_at])
        self._image_tail = list(prompt_ids[pad_at + 1:])
        if self.vision_start_id not in self._image_head or self.vision_end_id not in self._image_tail:
            raise ModelLoadError("the tokenizer does not map <|vision_start|>/<|vision_end|> to the config's ids")

    # ------------------------------------------------------------------ planning
    def image_prompt_ids(self, grid_thw: tuple[int, int, int]) -> tuple[list[int], tuple[int, int]]:
        """Token ids of the image prompt for an image of `grid_thw` patches, and the pooled span."""
        t, h, w = grid_thw
        n = (t * h * w) // (self.merge_size ** 2)
        ids = [*self._image_head, *([self.image_token_id] * n), *self._image_tail]
        start = self._image_head.index(self.vision_start_id)
        end = len(self._image_head) + n + self._image_tail.index(self.vision_end_id)
        return ids, (start, end)

    def preprocess_image(self, image: Any) -> tuple[np.ndarray, tuple[int, int, int]]:
        out = self.image_processor(images=[image], return_tensors="np")
        pixels = np.asarray(out["pixel_values"], dtype=np.float32)
        grid = tuple(int(x) for x in np.asarray(out["image_grid_thw"])[0])
        return pixels, grid  # type: ignore[return-value]

    def plan_late_chunking(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        from .jina_v3 import late_chunk_windows

        bad = [FieldError(f"body -> input -> {i}", "late_chunking takes text inputs only", "value_error",
                          "image" if x.image is not None else "token ids")
               for i, x in enumerate(inputs) if x.image is not None or x.token_ids is not None]
        if options.return_multivector:
            bad.append(FieldError("body -> late_chunking", "late_chunking cannot be combined with "
                                  "return_multivector", "value_error", True))
        if bad:
            raise ValidationFailedError(bad)
        if not inputs:
            return EmbedPlan([], 0, lambda outs: [])
        task = self.resolve_task(options.task)
        group = self.group_for(task)
        windows = late_chunk_windows(self.tokenizer, [x.text or "" for x in inputs], self.prefix_for(task),
                                     max_tokens=self.max_tokens, truncate=options.truncate)
        items = [WorkItem(V4Payload(ids, group, spans=spans), len(ids), group) for ids, spans in windows]

        def assemble(outs: list[Any]) -> list[np.ndarray]:
            return [vec for window in outs for vec in np.asarray(window)]

        return EmbedPlan(items, sum(len(ids) for ids, _ in windows), assemble)

    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        if options.late_chunking:
            return self.plan_late_chunking(inputs, options)
        task = self.resolve_task(options.task)
        group = self.group_for(task)
        multivector = bool(options.return_multivector)
        if multivector and self.projector is None:
            raise InvalidInputError(f"Model {self.spec.id!r} has no multi-vector projector")
        payloads: list[V4Payload | None] = [None] * len(inputs)

        text_idx = [i for i, x in enumerate(inputs) if x.image is None and x.token_ids is None]
        prefix = self.prefix_for(task)
        texts = [prefix + (inputs[i].text or "") for i in text_idx]
        for i, ids in zip(text_idx, tokenize(self.tokenizer, texts, max_tokens=self.max_tokens,
                                             truncate=options.truncate, add_special_tokens=False,
                                             indices=text_idx), strict=True):
            payloads[i] = V4Payload(ids, group, multivector)
        for i, x in enumerate(inputs):
            if x.token_ids is not None:
                ids = check_token_ids(x.token_ids, vocab_size=self.vocab_size, max_tokens=self.max_tokens,
                                      truncate=options.truncate, index=i)
                payloads[i] = V4Payload(ids, group, multivector)

        image_idx = [i for i, x in enumerate(inputs) if x.image is not None]
        if image_idx and self.image_processor is None:
            raise vision_missing(self.spec.id)
        if image_idx:
            images = load_images([inputs[i].image for i in image_idx], policy=self.image_policy, indices=image_idx,
                                 allow_local=options.in_process)
            for i, img in zip(image_idx, images, strict=True):
                try:
                    pixels, grid = self.preprocess_image(img)
                except (ValueError, OSError) as exc:
                    raise InvalidInputError(f"Input at index {i}: the image cannot be processed ({exc})") from None
                ids, span = self.image_prompt_ids(grid)
                if len(ids) > self.max_tokens:
                    raise TokenLimitExceededError(f"Input at index {i}: the image needs {len(ids)} tokens, over the "
                                                  f"model's limit of {self.max_tokens}")
                payloads[i] = V4Payload(ids, group, multivector, pixels, grid, span)

        items = [WorkItem(p, len(p.ids), group, 0 if p.pixel_values is None else p.pixel_values.nbytes)
                 for p in payloads if p is not None]
        total = sum(it.n_tokens for it in items)
        tokenized = None
        if multivector and options.return_tokenized_input:  # one token string per multi-vector row
            tokenized = [self.tokenizer.convert_ids_to_tokens(list(p.ids)) for p in payloads if p is not None]
        return EmbedPlan(items, total, lambda outs: list(outs), tokenized)

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        """Cosine between the query (retrieval.query) and each document (retrieval.passage), where a
        document may be text or an image."""
        q_task, d_task = self.rerank_tasks()
        docs = [EmbedInput(image=d.image) if d.text is None and d.image is not None else EmbedInput(text=d.text or "")
                for d in job.documents]
        q_plan = self.plan_embed([EmbedInput(text=job.query)], EmbedOptions(task=q_task, truncate=True))
        d_plan = self.plan_embed(docs, EmbedOptions(task=d_task, truncate=job.options.truncate))
        n_q = len(q_plan.items)

        def assemble(outs: list[Any]) -> RerankResult:
            q = _unit(np.asarray(outs[0], dtype=np.float32))
            d = np.stack([_unit(np.asarray(o, dtype=np.float32)) for o in outs[n_q:]])
            return RerankResult((d @ q).astype(np.float32), q_plan.total_tokens + d_plan.total_tokens)

        return RerankPlan(q_plan.items + d_plan.items, q_plan.total_tokens + d_plan.total_tokens, assemble)

    # ------------------------------------------------------------------ execution
    def _forward(self, payloads: list[V4Payload]) -> tuple[torch.Tensor, torch.Tensor]:
        from ..runtimes.torch_runtime import pad_batch

        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        with_images = [p for p in payloads if p.pixel_values is not None]
        pixel_values = grid = None
        if with_images:
            dtype = self.model.model.visual.dtype if hasattr(self.model.model.visual, "dtype") else torch.float32
            pixel_values = torch.from_numpy(np.concatenate([p.pixel_values for p in with_images])).to(
                device=self.device, dtype=dtype)
            grid = torch.tensor([p.grid_thw for p in with_images], dtype=torch.long, device=self.device)
        if grid is not None:  # 3-D (temporal, height, width) rope positions for the vision tokens
            mm_types = (input_ids == self.image_token_id).to(torch.int32)
            positions, _ = self.model.model.get_rope_index(input_ids, mm_token_type_ids=mm_types,
                                                           image_grid_thw=grid, attention_mask=mask)
        else:  # text only, right-padded: 0..n-1 on all three axes (what get_rope_index gives, without a loop)
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).view(1, 1, -1).expand(
                3, input_ids.shape[0], -1)
        out = self.model.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                               pixel_values=pixel_values, image_grid_thw=grid, use_cache=False)
        return out.last_hidden_state, mask

    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        self.active.name = payloads[0].group
        hidden, _mask = self._forward(payloads)
        outs: list[np.ndarray] = []
        for row, p in enumerate(payloads):
            n = len(p.ids)
            h = hidden[row, :n]
            if p.spans is not None:
                outs.append(torch.stack([h[s:e].float().mean(dim=0) for s, e in p.spans]).cpu().numpy())
            elif p.multivector:
                assert self.projector is not None
                vecs = self.projector(h.to(self.projector.weight.dtype)).float()
                outs.append(F.normalize(vecs, p=2, dim=-1).cpu().numpy())
            elif p.span is not None:
                s, e = p.span
                outs.append(h[s:e + 1].float().mean(dim=0).cpu().numpy())
            else:
                outs.append(h.float().mean(dim=0).cpu().numpy())
        return outs

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaV4Family:
        from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        from ..runtimes.torch_runtime import configure_threads, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        raw = json.loads((folder / "config.json").read_text())
        raw["model_type"] = "qwen2_5_vl"  # the remote-code config subclasses Qwen2.5-VL's
        raw.pop("auto_map", None)
        config = Qwen2_5_VLConfig.from_dict(raw)
        model = load_backbone(Qwen2_5_VLForConditionalGeneration, folder, config, device=device, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        image_processor = load_image_processor(folder, spec.id, _pixels(spec))
        own = folder_pixel_bounds(folder)
        if _pixels(spec) is None and own is not None and own != V4_REFERENCE_PIXELS:
            log.info("%s: the folder's preprocessor allows %d..%d image pixels while the -vllm-* rows use the "
                     "catalog's v4 reference bounds %d..%d: the same image gives different vectors on them (the "
                     "bounds are V4_REFERENCE_PIXELS in catalog/jina_v4.py)", spec.id, *own, *V4_REFERENCE_PIXELS)

        projector = None
        if "return_multivector" in spec.options:
            projector = load_projector(folder, device=device, dtype=dtype)
        active = _ActiveTask()
        adapters = sorted({t.adapter for t in spec.tasks if t.adapter})
        if adapters:
            projector, n = attach_lora(model, projector, folder / "adapters", adapters, active)
            log.info("%s: task LoRAs %s on %d modules", spec.id, adapters, n)
        max_tokens = min(spec.max_tokens, int(getattr(config.text_config, "max_position_embeddings", 32768)))
        hidden = int(config.text_config.hidden_size)
        if spec.dims != hidden:
            spec = replace(spec, dims=hidden)
        log.info("loaded %s from %s (device=%s, dtype=%s, dims=%d, multivector=%s)", spec.id, folder, device,
                 dtype, hidden, projector is not None)
        return cls(spec, model, tokenizer, image_processor, device=device, projector=projector, active=active,
                   image_policy=opts.image_policy, max_tokens=max_tokens)


def _pixels(spec: ModelSpec) -> tuple[int, int] | None:
    """The row's fixed image bounds (the -vllm-* rows: the main v4 repo's), else the folder's own."""
    bounds = spec.extra.get("image_pixels")
    return (int(bounds[0]), int(bounds[1])) if bounds else None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def load_backbone(model_cls: Any, folder: Path, config: Any, *, device: str, dtype: torch.dtype) -> Any:
    """Load the Qwen2.5-VL backbone (legacy key layout converted by transformers) with SDPA attention.

    transformers' load report is silenced because the checkpoint's `multi_vector_projector.*` keys are
    expected extras; instead the loading info is checked here: any missing backbone weight is an error."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = model_cls.from_pretrained(str(folder), config=config, dtype=dtype, attn_implementation="sdpa",
                                                output_loading_info=True)
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("lm_head."))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if "multi_vector_projector" not in k)
    if missing:
        raise ModelLoadError(f"{folder}: the checkpoint lacks {len(missing)} backbone weights, e.g. {missing[:3]}")
    if unexpected:
        log.warning("%s: %d checkpoint weights were not used, e.g. %s", folder, len(unexpected), unexpected[:3])
    model.eval()
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_projector(folder: Path, *, device: str, dtype: torch.dtype) -> nn.Linear:
    """`multi_vector_projector.{weight,bias}` from the checkpoint's safetensors files (any shard)."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open handles are not mappings
                if key.endswith("multi_vector_projector.weight"):
                    tensors["weight"] = fh.get_tensor(key)
                elif key.endswith("multi_vector_projector.bias"):
                    tensors["bias"] = fh.get_tensor(key)
    if "weight" not in tensors:
        raise ModelLoadError(f"{folder}: no 'multi_vector_projector.weight' in the checkpoint; multi-vector "
                                f"output needs the full jina-embeddings-v4 repo (the -vllm-* repos lack it)")
    out_f, in_f = tensors["weight"].shape
    linear = nn.Linear(in_f, out_f, bias="bias" in tensors)
    with torch.no_grad():
        linear.weight.copy_(tensors["weight"].float())
        if "bias" in tensors:
            linear.bias.copy_(tensors["bias"].float())
    linear = linear.to(device=device, dtype=dtype).eval()
    for p in linear.parameters():
        p.requires_grad_(False)
    return linear
