"""Tiny random-weight checkpoints in the published file layouts of the Jina text models.

* v5-small: Qwen3 base weights + `config.json` with the remote-code wrapper keys
  (`model_type: jina_embeddings_v5`, `architectures`, `task_names`, `auto_map`) + PEFT LoRA folders
  `adapters/{retrieval,text-matching,classification,clustering}/` + a byte-level BPE tokenizer that
  appends nothing.
* v5-nano: the same around a EuroBERT backbone (`is_decoder: false`); its tokenizer appends the
  end-of-text token, as the published one does.
* code: a plain Qwen2 checkpoint (no wrapper) + BPE tokenizer.
* v2: JinaBERT weights written key by key in the published naming (jina-bert-implementation, or
  qk-post-norm for v2-base-code), a BERT config with the JinaBERT fields, the MiniLM WordPiece tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

V5_TASKS = ("retrieval", "text-matching", "classification", "clustering")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Query: Document: hello world",
    "def add(a, b):\n    return a + b", "Find the most relevant code snippet given the following query:\n",
    "Candidate code snippet:\n", "Berlin is the capital of Germany.", "embeddings for search and retrieval",
    "Der schnelle braune Fuchs", "el zorro marrón", "import numpy as np", "class Foo: pass",
]


def build_bpe_tokenizer(dst: Path, *, append_eos: bool, bos: bool = False) -> dict[str, int]:
    """A small byte-level BPE tokenizer (Qwen/Llama style) saved as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 5, trainer)
    ids = {s: tok.token_to_id(s) for s in specials}
    if append_eos:
        single = ("<|begin_of_text|> " if bos else "") + "$A <|end_of_text|>"
        pairs = [("<|begin_of_text|>", ids["<|begin_of_text|>"])] if bos else []
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=single + " $B:1 <|end_of_text|>:1",
            special_tokens=[*pairs, ("<|end_of_text|>", ids["<|end_of_text|>"])])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end_of_text|>", pad_token="<|end_of_text|>",
                                       bos_token="<|begin_of_text|>", mask_token="<|mask|>")
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(str(dst))
    ids["vocab_size"] = tok.get_vocab_size()
    return ids


def _wrap_v5_config(dst: Path, *, is_decoder: bool) -> None:
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update({"model_type": "jina_embeddings_v5", "architectures": ["JinaEmbeddingsV5Model"],
                "task_names": list(V5_TASKS), "is_decoder": is_decoder,
                "auto_map": {"AutoConfig": "configuration_jina_embeddings_v5.JinaEmbeddingsV5Config",
                             "AutoModel": "modeling_jina_embeddings_v5.JinaEmbeddingsV5Model"}})
    (dst / "config.json").write_text(json.dumps(cfg, indent=2))


def _save_adapters(model_factory, dst: Path, *, seed: int) -> None:
    from peft import LoraConfig, get_peft_model

    for i, task in enumerate(V5_TASKS):
        torch.manual_seed(seed + 100 + i)
        base = model_factory()
        lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.1,
                          init_lora_weights=False, task_type="FEATURE_EXTRACTION")
        peft_model = get_peft_model(base, lcfg)
        # PEFT's non-zero init is small; scale B so that every task visibly moves the vectors.
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
        peft_model.save_pretrained(str(dst / "adapters" / task))


def build_v5_small(dst: Path, *, seed: int = 0, with_adapters: bool = True) -> Path:
    from transformers import Qwen3Config, Qwen3Model

    dst.mkdir(parents=True, exist_ok=True)
    ids = build_bpe_tokenizer(dst, append_eos=False)
    config = Qwen3Config(vocab_size=ids["vocab_size"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                         eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    Qwen3Model(config).save_pretrained(str(dst))
    _wrap_v5_config(dst, is_decoder=True)
    if with_adapters:
        _save_adapters(lambda: Qwen3Model(config), dst, seed=seed)
    return dst


def build_v5_nano(dst: Path, *, seed: int = 1) -> Path:
    from transformers import EuroBertConfig, EuroBertModel

    dst.mkdir(parents=True, exist_ok=True)
    ids = build_bpe_tokenizer(dst, append_eos=True, bos=True)
    config = EuroBertConfig(vocab_size=ids["vocab_size"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=512,
                            pad_token_id=ids["<|end_of_text|>"], bos_token_id=ids["<|begin_of_text|>"],
                            eos_token_id=ids["<|end_of_text|>"], mask_token_id=ids["<|mask|>"])
    torch.manual_seed(seed)
    EuroBertModel(config).save_pretrained(str(dst))
    _wrap_v5_config(dst, is_decoder=False)
    _save_adapters(lambda: EuroBertModel(config), dst, seed=seed)
    return dst


def build_code(dst: Path, *, seed: int = 2) -> Path:
    from transformers import Qwen2Config, Qwen2Model

    dst.mkdir(parents=True, exist_ok=True)
    ids = build_bpe_tokenizer(dst, append_eos=False)
    config = Qwen2Config(vocab_size=ids["vocab_size"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    Qwen2Model(config).save_pretrained(str(dst))
    return dst


# ------------------------------------------------------------------------------------------ v2 / JinaBERT
V2_DIMS = {"hidden": 32, "heads": 4, "inter": 48, "layers": 2}


def jinabert_state_dict(*, qk_post_norm: bool, vocab: int, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random weights under the published key names (written out here, independent of the model code)."""
    g = torch.Generator().manual_seed(seed)
    h, inter, layers = V2_DIMS["hidden"], V2_DIMS["inter"], V2_DIMS["layers"]

    def rnd(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def ln(name: str) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + rnd(h, scale=0.1), f"{name}.bias": rnd(h, scale=0.1)}

    sd = {"embeddings.word_embeddings.weight": rnd(vocab, h, scale=1.0),
          "embeddings.token_type_embeddings.weight": rnd(2, h),
          **ln("embeddings.LayerNorm"),
          "pooler.dense.weight": rnd(h, h), "pooler.dense.bias": rnd(h)}
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for m in ("query", "key", "value"):
            sd[f"{p}.attention.self.{m}.weight"] = rnd(h, h)
            sd[f"{p}.attention.self.{m}.bias"] = rnd(h)
        sd[f"{p}.attention.output.dense.weight"] = rnd(h, h)
        sd[f"{p}.attention.output.dense.bias"] = rnd(h)
        sd.update(ln(f"{p}.attention.output.LayerNorm"))
        if qk_post_norm:
            sd.update(ln(f"{p}.attention.self.layer_norm_q"))
            sd.update(ln(f"{p}.attention.self.layer_norm_k"))
            sd.update(ln(f"{p}.layer_norm_1"))
            sd.update(ln(f"{p}.layer_norm_2"))
            sd[f"{p}.mlp.up_gated_layer.weight"] = rnd(2 * inter, h)
            sd[f"{p}.mlp.down_layer.weight"] = rnd(h, inter)
            sd[f"{p}.mlp.down_layer.bias"] = rnd(h)
        else:
            sd[f"{p}.mlp.gated_layers.weight"] = rnd(2 * inter, h)
            sd[f"{p}.mlp.wo.weight"] = rnd(h, inter)
            sd[f"{p}.mlp.wo.bias"] = rnd(h)
            sd.update(ln(f"{p}.mlp.layernorm"))
    return {prefix + k: v.contiguous() for k, v in sd.items()}


def build_v2(dst: Path, *, qk_post_norm: bool = False, seed: int = 3, prefix: str = "") -> Path:
    from safetensors.torch import save_file

    from helpers import copy_bert_tokenizer

    dst.mkdir(parents=True, exist_ok=True)
    copy_bert_tokenizer(dst)
    vocab = 30522
    impl = "jinaai/jina-bert-v2-qk-post-norm" if qk_post_norm else "jinaai/jina-bert-implementation"
    config = {
        "architectures": ["JinaBertForMaskedLM"], "model_type": "bert", "attention_probs_dropout_prob": 0.0,
        "auto_map": {"AutoConfig": f"{impl}--configuration_bert.JinaBertConfig",
                     "AutoModel": f"{impl}--modeling_bert.JinaBertModel"},
        "emb_pooler": "mean", "feed_forward_type": "geglu", "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": V2_DIMS["hidden"], "intermediate_size": V2_DIMS["inter"], "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8192, "num_attention_heads": V2_DIMS["heads"],
        "num_hidden_layers": V2_DIMS["layers"], "pad_token_id": 0, "position_embedding_type": "alibi",
        "type_vocab_size": 2, "vocab_size": vocab,
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    save_file(jinabert_state_dict(qk_post_norm=qk_post_norm, vocab=vocab, seed=seed, prefix=prefix),
              str(dst / "model.safetensors"))
    return dst


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
