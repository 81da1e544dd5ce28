"""Tiny random-weight checkpoints in the published layouts of Jina's rerankers (no hub access).

- jina-reranker-v3: a `JinaForRanking` folder: Qwen3 weights under `model.`, the projector as
  `projector.0.weight` / `projector.2.weight` (in model.safetensors, or in projector.safetensors), and a
  byte-level BPE tokenizer holding the chat tokens and the two marker tokens.
- jina-reranker-v2-base-multilingual: the remote-code "flash" XLM-R layout (`mixer.Wqkv`, `norm1`, ...).
- jina-reranker-m0: `JinaVLForRanking` (Qwen2-VL): `model.*` language model, `visual.*` vision tower,
  `score.{0,2}.*` head, and the published preprocessor_config.json.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the", "cat", "dog", "sat", "on", "a", "mat", "and", "ran", "to", "park", "where", "birds", "sing", "loud",
    "songs", "about", "green", "trees", "in", "spring", "while", "people", "walk", "slowly", "past", "old",
    "houses", "near", "river", "banks", "under", "blue", "sky", "search", "engine", "query", "document", "ranking",
    "relevance", "model", "token", "vector", "answer", "question", "music", "sport", "food", "travel", "city",
)

V3_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|embed_token|>", "<|rerank_token|>"]
V3_ADDED = ["<think>", "</think>", "<instruct>", "</instruct>", "<passage", "</passage>", "<query>", "</query>"]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def random_text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_chars]


_TRAINED: dict[int, str] = {}


def build_qwen_tokenizer(dst: Path, *, vocab_size: int = 600, model_max_length: int = 131072):
    """A byte-level BPE tokenizer with Qwen's chat tokens and jina-reranker-v3's marker tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size in _TRAINED:  # trained once per process
        tok = Tokenizer.from_str(_TRAINED[vocab_size])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=V3_SPECIAL,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator([*corpus(), "passage id query instruct think system user assistant relevance"],
                                trainer=trainer)
        _TRAINED[vocab_size] = tok.to_str()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=model_max_length)
    fast.add_tokens(V3_ADDED)
    fast.save_pretrained(str(dst))
    return fast


QWEN3_0_6B = {"vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
              "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
              "max_position_embeddings": 40960, "rope_theta": 1000000.0, "tie_word_embeddings": True}


def build_tiny_v3(dst: Path, *, seed: int = 0, separate_projector: bool = False, hidden: int = 64,
                  layers: int = 2, model_max_length: int = 131072, full_vocab: int | None = None,
                  config_overrides: dict | None = None) -> Path:
    """A random-weight jina-reranker-v3 in the JinaForRanking layout (`config_overrides=QWEN3_0_6B` gives
    the real size)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    dst.mkdir(parents=True, exist_ok=True)
    tok = build_qwen_tokenizer(dst, model_max_length=model_max_length)
    torch.manual_seed(seed)
    heads = max(2, hidden // 16)
    kwargs = dict(vocab_size=full_vocab or len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                  head_dim=16, max_position_embeddings=131072, tie_word_embeddings=True, rope_theta=1000000.0)
    config = Qwen3Config(**{**kwargs, **(config_overrides or {})})
    hidden = config.hidden_size
    lm = Qwen3ForCausalLM(config).eval()
    state = {k: v.contiguous() for k, v in lm.state_dict().items() if not k.startswith("lm_head.")}
    projector = {"projector.0.weight": torch.randn(hidden // 2, hidden) / hidden ** 0.5,
                 "projector.2.weight": torch.randn(512, hidden // 2) / (hidden // 2) ** 0.5}
    if separate_projector:
        save_file(projector, str(dst / "projector.safetensors"))
    else:
        state.update(projector)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg["architectures"] = ["JinaForRanking"]
    cfg["auto_map"] = {"AutoModel": "modeling.JinaForRanking"}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def build_tiny_v2(dst: Path, *, seed: int = 0, max_position_embeddings: int = 130,
                  config_overrides: dict | None = None) -> tuple[Path, object]:
    """A random-weight jina-reranker-v2 in the remote-code flash layout; returns (folder, native model)."""
    import torch
    from safetensors.torch import save_file
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    dst.mkdir(parents=True, exist_ok=True)
    max_pos = int((config_overrides or {}).get("max_position_embeddings", max_position_embeddings))
    tok = _xlmr_style_tokenizer(dst, model_max_length=max_pos - 2)
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=max_pos, type_vocab_size=1,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  num_labels=1)
    config = XLMRobertaConfig(**{**kwargs, **(config_overrides or {})})
    native = XLMRobertaForSequenceClassification(config).eval()
    # Give the head a spread of outputs so scores are not all ~0.5
    with torch.no_grad():
        native.classifier.out_proj.weight.mul_(20)
    sd = native.state_dict()
    flash: dict[str, torch.Tensor] = {}
    p = "roberta."
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        flash[f"{p}embeddings.{name}.weight"] = sd[f"{p}embeddings.{name}.weight"]
    flash[f"{p}emb_ln.weight"] = sd[f"{p}embeddings.LayerNorm.weight"]
    flash[f"{p}emb_ln.bias"] = sd[f"{p}embeddings.LayerNorm.bias"]
    for i in range(config.num_hidden_layers):
        s, f = f"{p}encoder.layer.{i}.", f"{p}encoder.layers.{i}."
        for kind in ("weight", "bias"):
            flash[f"{f}mixer.Wqkv.{kind}"] = torch.cat([sd[f"{s}attention.self.{n}.{kind}"]
                                                        for n in ("query", "key", "value")])
            flash[f"{f}mixer.out_proj.{kind}"] = sd[f"{s}attention.output.dense.{kind}"]
            flash[f"{f}norm1.{kind}"] = sd[f"{s}attention.output.LayerNorm.{kind}"]
            flash[f"{f}mlp.fc1.{kind}"] = sd[f"{s}intermediate.dense.{kind}"]
            flash[f"{f}mlp.fc2.{kind}"] = sd[f"{s}output.dense.{kind}"]
            flash[f"{f}norm2.{kind}"] = sd[f"{s}output.LayerNorm.{kind}"]
    for k in ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
              "classifier.out_proj.bias"):
        flash[k] = sd[k]
    save_file({k: v.contiguous() for k, v in flash.items()}, str(dst / "model.safetensors"),
              metadata={"format": "pt"})
    cfg = config.to_dict()
    cfg.update({"architectures": ["XLMRobertaForSequenceClassification"], "use_flash_attn": True,
                "auto_map": {"AutoConfig": "configuration_xlm_roberta.XLMRobertaFlashConfig",
                             "AutoModelForSequenceClassification":
                                 "modeling_xlm_roberta.XLMRobertaForSequenceClassification"}})
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst, native


def _xlmr_style_tokenizer(dst: Path, *, model_max_length: int):
    """A BPE tokenizer with XLM-R's special tokens and pair template `<s> A </s></s> B </s>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus(seed=1), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                   model_max_length=model_max_length)
    fast.model_input_names = ["input_ids", "attention_mask"]
    fast.save_pretrained(str(dst))
    return fast


def build_tiny_m0(dst: Path, *, seed: int = 0) -> tuple[Path, object, dict]:
    """A random-weight jina-reranker-m0 in the published layout (`model.*` language model, `visual.*`,
    `score.{0,2}.*`); returns (folder, native Qwen2VLForConditionalGeneration, score-head tensors)."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    dst.mkdir(parents=True, exist_ok=True)
    tok = build_qwen_tokenizer(dst, model_max_length=32768)
    tok.add_tokens(["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"], special_tokens=True)
    tok.save_pretrained(str(dst))
    torch.manual_seed(seed)
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=False),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    native = Qwen2VLForConditionalGeneration(config).eval()
    state: dict[str, torch.Tensor] = {}
    for k, v in native.state_dict().items():
        if k.startswith("lm_head."):
            continue
        if k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        elif k.startswith("model.visual."):
            k = "visual." + k[len("model.visual."):]
        state[k] = v.contiguous()
    head = {"score.0.weight": torch.randn(64, 64) / 8, "score.0.bias": torch.randn(64) / 8,
            "score.2.weight": torch.randn(1, 64) / 2, "score.2.bias": torch.tensor([2.5])}
    state.update(head)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    # the published preprocessor_config.json (legacy min/max_pixels keys)
    (dst / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
        "min_pixels": 3136, "max_pixels": 602112, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711]}, indent=2))
    cfg = config.to_dict()
    cfg["architectures"] = ["JinaVLForRanking"]
    cfg["auto_map"] = {"AutoModel": "modeling.JinaVLForRanking"}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst, native, head
