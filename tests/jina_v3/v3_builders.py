"""Tiny random-weight jina-embeddings-v3 checkpoints in both published layouts.

`build_hf_checkpoint` writes the `jinaai/jina-embeddings-v3-hf` layout: native config + weights saved by
`JinaEmbeddingsV3Model.save_pretrained`, an XLM-R style tokenizer (SentencePiece-like Unigram, `<s>`/`</s>`),
and one PEFT LoRA folder per task (`adapter_config.json` + `adapter_model.safetensors`, PEFT key names).

`build_remote_checkpoint` writes the SAME weights in the original remote-code layout
(`jinaai/jina-embeddings-v3`, xlm-roberta-flash-implementation): keys under `roberta.`, fused `mixer.Wqkv`,
`torch.nn.utils.parametrize` names and the five adapters stacked per module. The reverse mapping here is
written out by hand, independently of `jinaserve.models.jina_v3_layout`.

The LoRA factors are returned too, so tests can apply them by explicit math.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

TASK_ORDER = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
FOLDER = {t: t.replace(".", "_").replace("-", "_") for t in TASK_ORDER}
PREFIXES = {"retrieval.query": "Represent the query for retrieving evidence documents: ",
            "retrieval.passage": "Represent the document for retrieval: "}
HIDDEN, LAYERS, HEADS, INTER, RANK, ALPHA = 32, 2, 2, 64, 4, 1.0
MAX_POS = 130  # → a 128-token context, so over-length cases stay cheap

CORPUS = [
    "Organic skincare for sensitive skin with aloe vera and chamomile.",
    "Represent the query for retrieving evidence documents: ",
    "Represent the document for retrieval: ",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Berlin is the capital of Germany; Paris is the capital of France.",
    "Late chunking pools token spans after one pass over the whole document.",
    "Matryoshka embeddings can be truncated to fewer dimensions and normalised again.",
    "hello world, how are you today? what is the weather like in Munich?",
]


@dataclass
class TinyV3:
    folder: Path
    # per task: module kind/name -> factors. linear: (A (r,in), B (out,r)); embedding: (A (num,r), B (r,dim))
    lora: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    vocab_size: int = 0


def build_tokenizer(dst: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False,
                                                      add_prefix_space=False)
    wrapped = XLMRobertaTokenizer(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")
    wrapped.save_pretrained(str(dst))
    return len(wrapped)


def build_hf_checkpoint(dst: Path, *, seed: int = 0) -> TinyV3:
    from safetensors.torch import save_file
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    dst.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(dst)
    torch.manual_seed(seed)
    config = JinaEmbeddingsV3Config(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                    num_attention_heads=HEADS, intermediate_size=INTER,
                                    max_position_embeddings=MAX_POS)
    model = JinaEmbeddingsV3Model(config)
    with torch.no_grad():  # LayerNorms away from identity, so a wrong mapping cannot hide
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layernorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(dst))
    info = TinyV3(dst, vocab_size=vocab)
    g = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.5

    for task in TASK_ORDER:
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
            "word_embeddings": (rnd(vocab, RANK), rnd(RANK, HIDDEN)),
            "token_type_embeddings": (rnd(1, RANK), rnd(RANK, HIDDEN)),
        }
        for layer in range(LAYERS):
            factors[f"{layer}.Wqkv"] = (rnd(RANK, HIDDEN), rnd(3 * HIDDEN, RANK))
            factors[f"{layer}.out_proj"] = (rnd(RANK, HIDDEN), rnd(HIDDEN, RANK))
            factors[f"{layer}.fc1"] = (rnd(RANK, HIDDEN), rnd(INTER, RANK))
            factors[f"{layer}.fc2"] = (rnd(RANK, INTER), rnd(HIDDEN, RANK))
        info.lora[task] = factors
        # PEFT layout: separate q/k/v (sharing A, B split by rows), embeddings as lora_embedding_A/B
        state: dict[str, torch.Tensor] = {}
        pre = "base_model.model."
        for emb in ("word_embeddings", "token_type_embeddings"):
            a, b = factors[emb]
            state[f"{pre}embeddings.{emb}.lora_embedding_A"] = a.T.contiguous()  # (r, num)
            state[f"{pre}embeddings.{emb}.lora_embedding_B"] = b.T.contiguous()  # (dim, r)
        for layer in range(LAYERS):
            a, b = factors[f"{layer}.Wqkv"]
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                state[f"{pre}layers.{layer}.self_attn.{proj}.lora_A.weight"] = a.clone()
                state[f"{pre}layers.{layer}.self_attn.{proj}.lora_B.weight"] = b[i * HIDDEN:(i + 1) * HIDDEN].clone()
            for name, module in (("out_proj", "self_attn.o_proj"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
                a, b = factors[f"{layer}.{name}"]
                state[f"{pre}layers.{layer}.{module}.lora_A.weight"] = a.clone()
                state[f"{pre}layers.{layer}.{module}.lora_B.weight"] = b.clone()
        sub = dst / FOLDER[task]
        sub.mkdir(exist_ok=True)
        save_file(state, str(sub / "adapter_model.safetensors"))
        (sub / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "r": RANK, "lora_alpha": ALPHA,
            "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
            "target_modules": ["word_embeddings", "token_type_embeddings", "q_proj", "k_proj", "v_proj", "o_proj",
                               "fc1", "fc2"],
            "base_model_name_or_path": "jinaai/jina-embeddings-v3-hf", "rank_pattern": {}, "alpha_pattern": {},
            "auto_mapping": {"base_model_class": "JinaEmbeddingsV3Model",
                             "parent_library": "transformers.models.jina_embeddings_v3.modeling_jina_embeddings_v3"},
        }))
    return info


def build_remote_checkpoint(hf: TinyV3, dst: Path) -> Path:
    """The same model in the remote-code layout (hand-written reverse mapping)."""
    from safetensors.torch import save_file
    from transformers import JinaEmbeddingsV3Model

    dst.mkdir(parents=True, exist_ok=True)
    native = JinaEmbeddingsV3Model.from_pretrained(str(hf.folder)).state_dict()
    out: dict[str, torch.Tensor] = {}
    R = "roberta."
    P = ".parametrizations.weight"

    def stacked(key: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.stack([hf.lora[t][key][0] for t in TASK_ORDER]),
                torch.stack([hf.lora[t][key][1] for t in TASK_ORDER]))

    for emb in ("word_embeddings", "token_type_embeddings"):
        out[f"{R}embeddings.{emb}{P}.original"] = native[f"embeddings.{emb}.weight"]
        out[f"{R}embeddings.{emb}{P}.0.lora_A"], out[f"{R}embeddings.{emb}{P}.0.lora_B"] = stacked(emb)
    out[f"{R}emb_ln.weight"] = native["embeddings.LayerNorm.weight"]
    out[f"{R}emb_ln.bias"] = native["embeddings.LayerNorm.bias"]
    for layer in range(LAYERS):
        n, r = f"layers.{layer}.", f"{R}encoder.layers.{layer}."
        out[f"{r}mixer.Wqkv{P}.original"] = torch.cat([native[f"{n}self_attn.{p}.weight"]
                                                      for p in ("q_proj", "k_proj", "v_proj")])
        out[f"{r}mixer.Wqkv.bias"] = torch.cat([native[f"{n}self_attn.{p}.bias"]
                                               for p in ("q_proj", "k_proj", "v_proj")])
        out[f"{r}mixer.Wqkv{P}.0.lora_A"], out[f"{r}mixer.Wqkv{P}.0.lora_B"] = stacked(f"{layer}.Wqkv")
        for remote, nat, key in (("mixer.out_proj", "self_attn.o_proj", "out_proj"), ("mlp.fc1", "mlp.fc1", "fc1"),
                                 ("mlp.fc2", "mlp.fc2", "fc2")):
            out[f"{r}{remote}{P}.original"] = native[f"{n}{nat}.weight"]
            out[f"{r}{remote}.bias"] = native[f"{n}{nat}.bias"]
            out[f"{r}{remote}{P}.0.lora_A"], out[f"{r}{remote}{P}.0.lora_B"] = stacked(f"{layer}.{key}")
        for remote, nat in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            out[f"{r}{remote}.weight"] = native[f"{n}{nat}.weight"]
            out[f"{r}{remote}.bias"] = native[f"{n}{nat}.bias"]
    save_file({k: v.contiguous() for k, v in out.items()}, str(dst / "model.safetensors"))
    (dst / "config.json").write_text(json.dumps({
        "architectures": ["XLMRobertaLoRA"],
        "auto_map": {"AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta."
                                   "XLMRobertaFlashConfig",
                     "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA"},
        "model_type": "xlm-roberta", "vocab_size": hf.vocab_size, "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": INTER,
        "hidden_act": "gelu", "layer_norm_eps": 1e-5, "max_position_embeddings": MAX_POS, "type_vocab_size": 1,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0, "load_trained_adapters": True, "lora_adaptations": TASK_ORDER,
        "lora_rank": RANK, "lora_alpha": ALPHA, "lora_dropout_p": 0.0, "lora_main_params_trainable": False,
        "task_instructions": {t: PREFIXES.get(t, "") for t in TASK_ORDER},
        "matryoshka_dimensions": [32, 64, 128, 256, 512, 768, 1024], "truncate_dim": None, "use_flash_attn": True,
    }))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(hf.folder / name, dst / name)
    return dst
