"""jina-reranker-m0: a pointwise reranker on a Qwen2-VL-2B backbone (docs/reference/hosted-api.md,
"Per-model mechanics").

Prompt: "**Document**:\\n{doc}\\n**Query**:\\n{query}" followed by the score token (id 100); score =
sigmoid(MLP(h_last) − 2.65) where h_last is the final (normed) hidden state of that last token and the MLP
is Linear(H→H) + ReLU + Linear(H→1) (`score.0`, `score.2` in the checkpoint).

Image documents (`{"image": url | base64 | data URI}`, loaded by `jinaserve.images` with its fetch
policy) take the place of the text: "**Document**:\\n<|vision_start|><|image_pad|>…<|vision_end|>\\n
**Query**:\\n{query}", with `<|image_pad|>` repeated once per merged vision patch from the Qwen2-VL image
processor (Pillow backend; min_pixels 3136, max_pixels 602112, which the reference `compute_score` forces
whatever the preprocessor file says, so at most ~768 visual tokens). The model is transformers' native
`Qwen2VLModel` (vision tower + language model, SDPA, no KV cache, no remote code). Text-only batches
run the language model alone with positions 0..n−1 (what Qwen2-VL's 3-axis rotary positions are for
text); batches holding an image get their 3-D rotary positions from `get_rope_index`. Right padding with
an attention mask keeps every sequence's positions as if it ran alone.

Checkpoint layouts accepted: the published one (`model.*` language model, `visual.*`, `score.*`) and
transformers ≥ 4.52's (`model.language_model.*`, `model.visual.*`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import ModelSpec
from ..errors import InvalidInputError, TokenLimitExceededError
from ..images import ImageFetchPolicy, load_images
from ..jobs import RerankJob, RerankResult
from ..runtimes.torch_runtime import pad_batch
from .base import ModelFamily, RerankPlan, WorkItem
from .image_processing import load_image_processor, vision_missing
from .loading import LoadOptions

log = logging.getLogger("jinaserve.models.jina_reranker_m0")


IMAGE_DOC = "<|vision_start|><|image_pad|><|vision_end|>"
# the reference `compute_score` forces these bounds whatever preprocessor_config.json says
REFERENCE_PIXELS = (3136, 602112)


def build_prompt(query: str, doc: str) -> str:
    return f"**Document**:\n{doc}\n**Query**:\n{query}"


@dataclass
class M0Payload:
    ids: list[int]
    pixel_values: np.ndarray | None = None  # (patches, C·T·P·P) from the image processor
    grid_thw: tuple[int, int, int] | None = None


class JinaRerankerM0Family(ModelFamily):
    family_name = "jina_reranker_m0"

    def __init__(self, spec: ModelSpec, model: Any, score: torch.nn.Module, tokenizer: Any, *,
                 device: str = "cpu", image_processor: Any = None,
                 image_policy: ImageFetchPolicy | None = None) -> None:
        self.spec = spec
        self.model = model  # Qwen2VLModel: .visual + .language_model
        self.score = score
        self.tokenizer = tokenizer
        self.device = device
        self.image_processor = image_processor
        self.image_policy = (image_policy or ImageFetchPolicy()).for_processor(image_processor)
        cfg = model.config
        self.image_token_id = int(cfg.image_token_id)
        self.merge_size = int(getattr(image_processor, "merge_size", 2) or 2)
        extra = spec.extra
        self.score_token_id = int(extra.get("score_token_id", 100))
        self.logit_bias = float(extra.get("logit_bias", 2.65))
        self.max_tokens = int(spec.max_tokens)
        self.max_query_tokens = int(extra.get("max_query_tokens", 512))
        # as the reference compute_score(): documents get the room the query does not need
        self.max_doc_tokens = max(self.max_tokens - self.max_query_tokens, self.max_query_tokens)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaRerankerM0Family:
        from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLModel

        from ..runtimes.torch_runtime import configure_threads, load_pretrained, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = Qwen2VLConfig.from_pretrained(str(folder))
        text_config = config.text_config
        text_config.use_cache = False
        # published layout: model.* = language model, visual.* = vision tower (the `score.*` head is read
        # separately); transformers ≥ 4.52 layout: model.language_model.*, model.visual.*
        model = load_pretrained(Qwen2VLModel, folder, device=device, dtype=dtype, config=config,
                                key_mapping={r"^model\.language_model\.": "language_model.",
                                             r"^model\.visual\.": "visual.",
                                             r"^model\.(?!language_model\.|visual\.)": "language_model."})
        score = _load_score_head(folder, text_config.hidden_size).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if cls_score_token_oob(spec, len(tokenizer), text_config.vocab_size):
            raise ValueError(f"{folder}: score token id is outside the vocabulary")
        image_processor = load_image_processor(folder, spec.id, REFERENCE_PIXELS)
        log.info("loaded %s from %s (Qwen2-VL, %d layers, hidden %d; text and image documents; %s, %s)",
                 spec.id, folder, text_config.num_hidden_layers, text_config.hidden_size, device, dtype)
        return cls(spec, model, score, tokenizer, device=device, image_processor=image_processor,
                   image_policy=opts.image_policy)

    # ------------------------------------------------------------------ planning
    def encode(self, query: str, doc: str) -> list[int]:
        d_ids = self.tokenizer(doc, truncation=True, max_length=self.max_doc_tokens)["input_ids"]
        if len(d_ids) >= self.max_doc_tokens:
            doc = self.tokenizer.decode(d_ids)
        ids = self.tokenizer(build_prompt(query, doc), truncation=True, max_length=self.max_tokens - 1)["input_ids"]
        return [*ids, self.score_token_id]

    def encode_image(self, query: str, image: Any, index: int) -> M0Payload:
        try:
            out = self.image_processor(images=[image], return_tensors="np")
        except (ValueError, OSError) as exc:
            raise InvalidInputError(f"Document at index {index}: the image cannot be processed ({exc})") from None
        pixels = np.asarray(out["pixel_values"], dtype=np.float32)
        grid = tuple(int(x) for x in np.asarray(out["image_grid_thw"])[0])
        q_ids = self.tokenizer(query, add_special_tokens=False, truncation=True,
                               max_length=self.max_query_tokens)["input_ids"]
        if len(q_ids) >= self.max_query_tokens:
            query = self.tokenizer.decode(q_ids)
        ids = list(self.tokenizer(build_prompt(query, IMAGE_DOC))["input_ids"])
        if ids.count(self.image_token_id) != 1:
            raise InvalidInputError(f"{self.spec.id}: the tokenizer does not map <|image_pad|> to the config's "
                                    f"image_token_id")
        n = (grid[0] * grid[1] * grid[2]) // (self.merge_size ** 2)
        at = ids.index(self.image_token_id)
        ids = [*ids[:at], *([self.image_token_id] * n), *ids[at + 1:], self.score_token_id]
        if len(ids) > self.max_tokens:
            raise TokenLimitExceededError(f"Document at index {index}: the image needs {len(ids)} tokens, over "
                                          f"the model's limit of {self.max_tokens}")
        return M0Payload(ids, pixels, grid)  # type: ignore[arg-type]

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        payloads: list[M0Payload | None] = [None] * len(job.documents)
        image_idx = [i for i, d in enumerate(job.documents) if d.text is None]
        if image_idx:
            bad = [i for i in image_idx if job.documents[i].image is None]
            if bad:
                raise InvalidInputError(f"Document at index {bad[0]} has neither text nor an image")
            if self.image_processor is None:
                raise vision_missing(self.spec.id)
            images = load_images([job.documents[i].image for i in image_idx], policy=self.image_policy,
                                 indices=image_idx)
        with self._tokenizer_lock:
            for i, d in enumerate(job.documents):
                if d.text is not None:
                    payloads[i] = M0Payload(self.encode(job.query, d.text))
            for i, img in zip(image_idx, images if image_idx else [], strict=True):
                payloads[i] = self.encode_image(job.query, img, i)
        items = [WorkItem(p, len(p.ids), nbytes=0 if p.pixel_values is None else p.pixel_values.nbytes)
                 for p in payloads if p is not None]
        total = sum(len(p.ids) for p in payloads)

        def assemble(outs: list[Any]) -> RerankResult:
            return RerankResult(np.asarray(outs, dtype=np.float32), total)

        return RerankPlan(items, total, assemble)

    # ------------------------------------------------------------------ execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        # a lone sequence has no padding: no mask at all lets SDPA take its causal kernel (no n×n matrix)
        attention_mask = mask if len(payloads) > 1 else None
        with_images = [p for p in payloads if p.pixel_values is not None]
        if not with_images:
            hidden = self.model.language_model(input_ids=input_ids, attention_mask=attention_mask,
                                               use_cache=False).last_hidden_state
        else:
            pixel_values = torch.from_numpy(np.concatenate([p.pixel_values for p in with_images])).to(
                device=self.device, dtype=self.model.visual.dtype)
            grid = torch.tensor([p.grid_thw for p in with_images], dtype=torch.long, device=self.device)
            mm_types = (input_ids == self.image_token_id).to(torch.int32)
            positions, _ = self.model.get_rope_index(input_ids, mm_token_type_ids=mm_types, image_grid_thw=grid,
                                                     attention_mask=mask)
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                                pixel_values=pixel_values, image_grid_thw=grid, use_cache=False).last_hidden_state
        last = torch.stack([hidden[i, len(p.ids) - 1] for i, p in enumerate(payloads)]).float()
        logits = self.score(last).view(-1)
        return [float(x) for x in torch.sigmoid(logits - self.logit_bias).cpu()]


def cls_score_token_oob(spec: ModelSpec, tokenizer_size: int, vocab_size: int) -> bool:
    return int(spec.extra.get("score_token_id", 100)) >= max(tokenizer_size, vocab_size)


def _load_score_head(folder: Path, hidden: int) -> torch.nn.Module:
    from safetensors import safe_open

    wanted = {f"score.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    found: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for k in wanted & set(sf.keys()):
                found[k] = sf.get_tensor(k)
    if set(found) != wanted:
        raise ValueError(f"{folder}: score head weights missing: {sorted(wanted - set(found))}")
    head = torch.nn.Sequential(torch.nn.Linear(hidden, found["score.0.weight"].shape[0]), torch.nn.ReLU(),
                               torch.nn.Linear(found["score.2.weight"].shape[1], 1))
    with torch.no_grad():
        head[0].weight.copy_(found["score.0.weight"].float())
        head[0].bias.copy_(found["score.0.bias"].float())
        head[2].weight.copy_(found["score.2.weight"].float())
        head[2].bias.copy_(found["score.2.bias"].float())
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
