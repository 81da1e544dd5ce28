"""jina-reranker-v3: listwise "last but not late" reranking (docs/reference/hosted-api.md,
"jina-reranker-v3 prompt and scoring").

One prompt holds the query and a block of documents. Each document ends with `<|embed_token|>`, the
query (repeated at the end) with `<|rerank_token|>`. The last-layer hidden states at those positions go
through the projector (Linear 1024→512, ReLU, Linear 512→512, no biases); the score of a document is the
cosine of its projected vector with the projected query vector, in [-1, 1].

The checkpoint (`JinaForRanking`, a Qwen3ForCausalLM subclass with `lm_head = Identity`) keeps the Qwen3
weights under `model.` and the projector as `projector.0.weight` / `projector.2.weight`, either in the
model safetensors or in a separate `projector.safetensors`. The backbone runs on transformers' native
`Qwen3Model` (no remote code) with SDPA attention and no KV cache.

Long lists are split into blocks exactly as the reference `rerank()`: documents are packed greedily until
125 documents or until the remaining capacity (context − 2·query tokens − document tokens so far) falls to
`max_doc_length` or below. Each block is one `WorkItem` (its token count is the batcher's budget unit;
blocks from concurrent requests share batches when they fit, a block larger than the budget runs alone).
The final query vector is the average of the per-block query vectors weighted by each block's best
(1 + cos) / 2, and the final scores are cosines against it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import ModelSpec
from ..errors import FieldError, InvalidInputError, ModelLoadError, ValidationFailedError
from ..jobs import RerankJob, RerankResult
from ..runtimes.backbone import Backbone, as_backbone
from ..runtimes.torch_runtime import pad_batch
from .base import ModelFamily, RerankPlan, WorkItem
from .loading import LoadOptions

log = logging.getLogger("jinaserve.models.jina_reranker_v3")

SYSTEM_PROMPT = (
    "You are a search relevance expert who can determine a ranking of the passages based on how relevant they "
    "are to the query. If the query is a question, how relevant a passage is depends on how well it answers "
    "the question. If not, try to analyze the intent of the query and assess how well each passage satisfies "
    "the intent. If an instruction is provided, you should follow the instruction when determining the ranking."
)


def build_prompt(query: str, docs: list[str], *, doc_token: str, query_token: str,
                 instruction: str | None = None) -> str:
    """The listwise prompt of §6.2 (query and documents must already be stripped of the two tokens)."""
    parts = [
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n",
        f"I will provide you with {len(docs)} passages, each indicated by a numerical identifier. "
        f"Rank the passages based on their relevance to query: {query}\n",
    ]
    if instruction:
        parts.append(f"<instruct>\n{instruction}\n</instruct>\n")
    parts.append("\n".join(f'<passage id="{i}">\n{d}{doc_token}\n</passage>' for i, d in enumerate(docs)))
    parts.append(f"\n<query>\n{query}{query_token}\n</query>")
    parts.append("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    return "".join(parts)


def pack_blocks(doc_lengths: list[int], *, query_length: int, context: int, max_doc_length: int,
                block_size: int) -> list[list[int]]:
    """Document indices per block, by the reference's greedy rule."""
    blocks: list[list[int]] = []
    current: list[int] = []
    capacity = context - 2 * query_length
    for i, length in enumerate(doc_lengths):
        current.append(i)
        capacity -= length
        if len(current) >= block_size or capacity <= max_doc_length:
            blocks.append(current)
            current = []
            capacity = context - 2 * query_length
    if current:
        blocks.append(current)
    return blocks


def merge_blocks(query_vecs: list[np.ndarray], doc_vecs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Final (scores, document vectors) from per-block projected query vectors and document vectors."""
    weights = []
    for q, d in zip(query_vecs, doc_vecs, strict=True):
        weights.append(float(((1.0 + _cosine(d, q)) / 2.0).max()))
    w = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(w).all() or w.sum() <= 0:
        w = np.ones_like(w)
    merged = (np.stack(query_vecs).astype(np.float64) * w[:, None]).sum(0) / w.sum()
    docs = np.concatenate(doc_vecs, axis=0)
    return _cosine(docs, merged).astype(np.float32), docs


def _cosine(docs: np.ndarray, q: np.ndarray) -> np.ndarray:
    docs = np.asarray(docs, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    denom = np.linalg.norm(docs, axis=-1) * np.linalg.norm(q)
    return (docs @ q) / np.maximum(denom, 1e-12)


@dataclass
class BlockPayload:
    ids: list[int]
    n_docs: int


class JinaRerankerV3Family(ModelFamily):
    family_name = "jina_reranker_v3"

    def __init__(self, spec: ModelSpec, model: Any, projector: torch.nn.Module, tokenizer: Any, *,
                 device: str = "cpu", context: int = 131072) -> None:
        self.spec = spec
        self.model = model
        self.backbone: Backbone = as_backbone(model)
        self.projector = projector
        self.tokenizer = tokenizer
        self.device = device
        self.context = int(context)
        extra = spec.extra
        self.doc_token = str(extra.get("doc_token", "<|embed_token|>"))
        self.query_token = str(extra.get("query_token", "<|rerank_token|>"))
        self.max_query_tokens = int(extra.get("max_query_tokens", 512))
        self.default_max_doc_length = int(extra.get("default_max_doc_length", 2048))
        self.max_doc_length_limit = int(extra.get("max_doc_length_limit", 8192))
        self.block_size = int(extra.get("block_size", 125))
        self.doc_token_id = _token_id(tokenizer, self.doc_token)
        self.query_token_id = _token_id(tokenizer, self.query_token)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        # A fast tokenizer's truncation settings are shared state: calls with different max_length from
        # concurrent requests must not interleave.
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaRerankerV3Family:
        from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

        from ..runtimes.torch_runtime import (
            auto_cpu_dtype,
            configure_threads,
            load_pretrained,
            select_device,
            select_dtype,
        )

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only, prefer="bfloat16")
        config = Qwen3Config.from_pretrained(str(folder))
        config.use_cache = False
        # JinaForRanking keeps the backbone under `model.`: Qwen3Model's base-model prefix strips it.
        model = load_pretrained(Qwen3Model, folder, device=device, dtype=dtype, config=config)
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        hidden = int(config.hidden_size)
        try:
            projector = build_projector(load_projector_state(folder), hidden).to(device)
        except ValueError as exc:
            raise ValueError(f"{folder}: {exc}") from exc
        w0 = projector[0].weight
        w2 = projector[2].weight
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        context = _context_length(tokenizer, config, opts)
        log.info("loaded %s from %s (Qwen3 %d layers, hidden %d, projector %d→%d→%d, context %d, %s, %s)",
                 spec.id, folder, config.num_hidden_layers, hidden, w0.shape[1], w0.shape[0], w2.shape[0],
                 context, device, dtype)
        return cls(spec, model, projector, tokenizer, device=device, context=context)

    def quantize_int8(self, folder: Path, opts: Any) -> None:
        from .base import int8_backbone_for

        self.backbone = int8_backbone_for(self, self.model, folder, opts)
        self.model = self.backbone

    @classmethod
    def load_gguf(cls, spec: ModelSpec, folder: Path, backbone: Any, opts: Any) -> JinaRerankerV3Family:
        """The published GGUF (the Qwen3 backbone only) + `projector.safetensors` from the same folder."""
        from ..runtimes.llamacpp_runtime import load_tokenizer

        if not (folder / "projector.safetensors").is_file() and not list(folder.glob("*.safetensors")):
            raise ModelLoadError(f"{folder} has no projector.safetensors next to {backbone.path.name}: "
                                 f"jina-reranker-v3 needs it (it is in the jina-reranker-v3-GGUF repo)")
        try:
            projector = build_projector(load_projector_state(folder), backbone.hidden_size)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
        context = backbone.n_batch
        limit = getattr(opts, "rerank_block_tokens", None)
        if limit:
            context = min(context, int(limit))
        return cls(spec, backbone, projector, load_tokenizer(folder, backbone), device="cpu", context=context)

    # ------------------------------------------------------------------ planning
    def sanitize(self, text: str) -> str:
        return text.replace(self.doc_token, "").replace(self.query_token, "")

    def truncate_query(self, query: str) -> tuple[str, int]:
        ids = self.tokenizer(query, truncation=True, max_length=self.max_query_tokens)["input_ids"]
        if len(ids) >= self.max_query_tokens:
            query = self.tokenizer.decode(ids)
        return query, len(ids)

    def truncate_docs(self, docs: list[str], max_doc_length: int) -> tuple[list[str], list[int]]:
        if not docs:
            return [], []
        enc = self.tokenizer(docs, truncation=True, max_length=max_doc_length)["input_ids"]
        out, lengths = [], []
        for doc, ids in zip(docs, enc, strict=True):
            out.append(self.tokenizer.decode(ids) if len(ids) >= max_doc_length else doc)
            lengths.append(len(ids))
        return out, lengths

    def encode_block(self, query: str, docs: list[str], instruction: str | None) -> BlockPayload:
        prompt = build_prompt(query, docs, doc_token=self.doc_token, query_token=self.query_token,
                              instruction=instruction)
        ids = list(self.tokenizer(prompt)["input_ids"])
        n_doc = sum(1 for t in ids if t == self.doc_token_id)
        n_query = sum(1 for t in ids if t == self.query_token_id)
        if n_doc != len(docs) or n_query != 1:
            raise InvalidInputError(f"Prompt for {self.spec.id!r} has {n_doc} document and {n_query} query "
                                    f"marker tokens, expected {len(docs)} and 1")
        return BlockPayload(ids, len(docs))

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        opts = job.options
        max_doc_length = opts.max_doc_length or self.default_max_doc_length
        if max_doc_length < 1 or max_doc_length > self.max_doc_length_limit:
            raise ValidationFailedError([FieldError(
                "body -> max_doc_length", f"Input should be between 1 and {self.max_doc_length_limit} tokens",
                "less_than_equal", max_doc_length)])
        texts = []
        for i, d in enumerate(job.documents):
            if d.text is None:
                raise InvalidInputError(f"Document at index {i} is not text; model {self.spec.id!r} ranks "
                                        f"text only")
            texts.append(self.sanitize(d.text))
        instruction = self.sanitize(opts.instruction) if opts.instruction else None
        with self._tokenizer_lock:
            query, q_len = self.truncate_query(self.sanitize(job.query))
            docs, lengths = self.truncate_docs(texts, max_doc_length)
            blocks = pack_blocks(lengths, query_length=q_len, context=self.context,
                                 max_doc_length=max_doc_length, block_size=self.block_size)
            payloads = [self.encode_block(query, [docs[i] for i in b], instruction) for b in blocks]
        items = [WorkItem(p, len(p.ids)) for p in payloads]
        total = sum(len(p.ids) for p in payloads)
        order = [i for b in blocks for i in b]  # identity (blocks are consecutive), kept explicit
        n_docs = len(docs)

        def assemble(outs: list[Any]) -> RerankResult:
            if not outs:
                return RerankResult(np.zeros(0, dtype=np.float32), total)
            scores, vecs = merge_blocks([o[0] for o in outs], [o[1] for o in outs])
            final = np.empty(n_docs, dtype=np.float32)
            final[order] = scores
            emb = None
            if opts.return_embeddings:
                unit = vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-12)
                emb = np.empty_like(unit, dtype=np.float32)
                emb[order] = unit
            return RerankResult(final, total, emb)

        return RerankPlan(items, total, assemble)

    # ------------------------------------------------------------------ execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        """Per block: (projected query vector [P], projected document vectors [n_docs, P]) as float32."""
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        # A lone block has no padding: no mask at all lets SDPA take its causal kernel (no n×n matrix).
        attention_mask = mask if len(payloads) > 1 else None
        hidden = self.backbone.encode(input_ids, attention_mask)
        out = []
        for i, p in enumerate(payloads):
            ids_i = input_ids[i, :len(p.ids)]
            h = hidden[i, :len(p.ids)]
            d = h[ids_i == self.doc_token_id].float()
            q = h[ids_i == self.query_token_id].float()
            vecs = self.projector(torch.cat([d, q], dim=0)).cpu().numpy()
            out.append((vecs[-1].astype(np.float32), vecs[:-1].astype(np.float32)))
        return out


# ---------------------------------------------------------------------- helpers
def _token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id or not isinstance(tid, int):
        raise ValueError(f"tokenizer has no {token!r} token: not a jina-reranker-v3 checkpoint")
    return int(tid)


def _context_length(tokenizer: Any, config: Any, opts: LoadOptions) -> int:
    context = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if context <= 0 or context > 10_000_000:  # unset (transformers' huge sentinel)
        context = int(getattr(config, "max_position_embeddings", 131072))
    limit = getattr(opts, "rerank_block_tokens", None)
    if limit:
        context = min(context, int(limit))
    return context


def build_projector(state: dict[str, torch.Tensor], hidden: int) -> torch.nn.Sequential:
    """Linear(hidden→P1), ReLU, Linear(P1→P2), no biases, float32, from `projector.{0,2}.weight`."""
    w0, w2 = state["projector.0.weight"], state["projector.2.weight"]
    if w0.shape[1] != hidden or w2.shape[1] != w0.shape[0]:
        raise ValueError(f"projector shapes {tuple(w0.shape)}, {tuple(w2.shape)} do not fit hidden size {hidden}")
    projector = torch.nn.Sequential(torch.nn.Linear(w0.shape[1], w0.shape[0], bias=False), torch.nn.ReLU(),
                                    torch.nn.Linear(w2.shape[1], w2.shape[0], bias=False))
    projector[0].weight.data.copy_(w0.float())
    projector[2].weight.data.copy_(w2.float())
    projector.eval()
    for p in projector.parameters():
        p.requires_grad_(False)
    return projector


def load_projector_state(folder: Path) -> dict[str, torch.Tensor]:
    """`projector.0.weight` and `projector.2.weight` from projector.safetensors or the model safetensors."""
    from safetensors import safe_open

    wanted = ("projector.0.weight", "projector.2.weight")
    files: list[Path] = []
    if (folder / "projector.safetensors").is_file():
        files.append(folder / "projector.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files.extend(folder / weight_map[k] for k in wanted if k in weight_map)
    files.extend(sorted(folder.glob("*.safetensors")))
    found: dict[str, torch.Tensor] = {}
    for f in dict.fromkeys(files):
        if not f.is_file():
            continue
        with safe_open(str(f), framework="pt") as sf:
            keys = set(sf.keys())
            for k in wanted:
                if k not in found:
                    for candidate in (k, f"model.{k}", k.replace("projector.", "")):
                        if candidate in keys:
                            found[k] = sf.get_tensor(candidate)
                            break
        if len(found) == len(wanted):
            return found
    missing = [k for k in wanted if k not in found]
    raise ValueError(f"{folder}: projector weights {missing} not found (expected in projector.safetensors or "
                     f"the model safetensors)")
