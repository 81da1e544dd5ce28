"""Tiny random-weight checkpoints in the published layouts of jina-clip-v1/v2, jina-colbert-v1-en/v2 and
jina-reranker-v1, written key by key here (independent of jinaserve's loaders).

Each builder returns the folder plus the raw tensors the references need. Folder names are chosen by the
fixtures (neutral names, so the tests also cover recognition from the files alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from helpers import copy_bert_tokenizer

TEXT_H, TEXT_LAYERS, TEXT_INTER = 128, 2, 96  # text towers: 2 heads of 64
VIS = {"width": 128, "layers": 2, "head_width": 64, "mlp_ratio": 2.6667, "image_size": 32, "patch_size": 8}
CLIP_V2_PREFIX = "Represent the query for retrieving evidence documents: "


@dataclass
class Built:
    folder: Path
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # as saved (published names)
    native: object = None  # a transformers model holding the same text weights (XLM-R towers)
    extra: dict = field(default_factory=dict)


def _rnd(g: torch.Generator, *shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * scale


def _ln(g: torch.Generator, name: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": 1 + _rnd(g, n, scale=0.1), f"{name}.bias": _rnd(g, n, scale=0.1)}


def jinabert_tensors(g: torch.Generator, *, vocab: int, hidden: int, inter: int,
                     layers: int) -> dict[str, torch.Tensor]:
    """jina-bert-implementation names (no prefix)."""
    sd = {"embeddings.word_embeddings.weight": _rnd(g, vocab, hidden, scale=1.0),
          "embeddings.token_type_embeddings.weight": _rnd(g, 2, hidden), **_ln(g, "embeddings.LayerNorm", hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}"
        for m in ("query", "key", "value"):
            sd[f"{p}.attention.self.{m}.weight"] = _rnd(g, hidden, hidden)
            sd[f"{p}.attention.self.{m}.bias"] = _rnd(g, hidden)
        sd[f"{p}.attention.output.dense.weight"] = _rnd(g, hidden, hidden)
        sd[f"{p}.attention.output.dense.bias"] = _rnd(g, hidden)
        sd.update(_ln(g, f"{p}.attention.output.LayerNorm", hidden))
        sd[f"{p}.mlp.gated_layers.weight"] = _rnd(g, 2 * inter, hidden)
        sd[f"{p}.mlp.wo.weight"] = _rnd(g, hidden, inter)
        sd[f"{p}.mlp.wo.bias"] = _rnd(g, hidden)
        sd.update(_ln(g, f"{p}.mlp.layernorm", hidden))
    return sd


def jinabert_config(arch: str, hidden: int, inter: int, layers: int, **more) -> dict:
    """A config.json as the published JinaBERT checkpoints write it (jina-bert-implementation remote code)."""
    return {"architectures": [arch], "model_type": "bert", "_name_or_path": "jinaai/jina-bert-implementation",
            "auto_map": {"AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
                         "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel"},
            "attention_probs_dropout_prob": 0.0, "feed_forward_type": "geglu", "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "hidden_size": hidden, "intermediate_size": inter, "layer_norm_eps": 1e-12,
            "max_position_embeddings": 8192, "num_attention_heads": hidden // 64 if hidden >= 64 else 4,
            "num_hidden_layers": layers, "pad_token_id": 0, "position_embedding_type": "alibi",
            "type_vocab_size": 2, "vocab_size": 30522, **more}


def eva_tensors(g: torch.Generator, cfg: dict) -> dict[str, torch.Tensor]:
    """EVA02 (subln, SwiGLU, q/v biases) under the published names, no prefix."""
    w, n = cfg["width"], (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    hid = int(w * cfg["mlp_ratio"])
    p = cfg["patch_size"]
    sd = {"cls_token": _rnd(g, 1, 1, w), "pos_embed": _rnd(g, 1, n, w), "patch_embed.proj.weight": _rnd(g, w, 3, p, p),
          "patch_embed.proj.bias": _rnd(g, w), **_ln(g, "norm", w)}
    for i in range(cfg["layers"]):
        b = f"blocks.{i}"
        sd.update(_ln(g, f"{b}.norm1", w))
        sd.update(_ln(g, f"{b}.norm2", w))
        for m in ("q_proj", "k_proj", "v_proj"):
            sd[f"{b}.attn.{m}.weight"] = _rnd(g, w, w, scale=0.1)
        sd[f"{b}.attn.q_bias"], sd[f"{b}.attn.v_bias"] = _rnd(g, w), _rnd(g, w)
        sd.update(_ln(g, f"{b}.attn.inner_attn_ln", w))
        sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"] = _rnd(g, w, w, scale=0.1), _rnd(g, w)
        for m, shape in (("w1", (hid, w)), ("w2", (hid, w)), ("w3", (w, hid))):
            sd[f"{b}.mlp.{m}.weight"], sd[f"{b}.mlp.{m}.bias"] = _rnd(g, *shape, scale=0.1), _rnd(g, shape[0])
        sd.update(_ln(g, f"{b}.mlp.ffn_ln", hid))
    return sd


def _vision_config(**more) -> dict:
    return {"embed_dim": VIS["width"], "fused_layer_norm": False, "head_width": VIS["head_width"],
            "image_size": VIS["image_size"], "layers": VIS["layers"], "ls_init_value": None,
            "mlp_ratio": VIS["mlp_ratio"], "model_type": "jina_clip_vision", "naive_swiglu": True,
            "patch_dropout": 0.1, "patch_size": VIS["patch_size"], "post_norm": False, "proj_type": None,
            "qkv_bias": True, "rope_embeddings": True, "subln": True, "width": VIS["width"], **more}


def _clip_config(text_config: dict, vision_config: dict, **more) -> dict:
    return {"add_projections": False, "architectures": ["JinaCLIPModel"],
            "auto_map": {"AutoConfig": "jinaai/jina-clip-implementation--configuration_clip.JinaCLIPConfig",
                         "AutoModel": "jinaai/jina-clip-implementation--modeling_clip.JinaCLIPModel"},
            "initializer_factor": 1.0, "logit_scale_init_value": 2.6592, "model_type": "jina_clip",
            "projection_dim": VIS["width"], "text_config": text_config, "vision_config": vision_config,
            "torch_dtype": "float32", "truncate_dim": None, **more}


def _preprocessor(dst: Path) -> None:
    (dst / "preprocessor_config.json").write_text(json.dumps({
        "auto_map": {"AutoImageProcessor": "jinaai/jina-clip-implementation--processing_clip.JinaCLIPImageProcessor",
                     "AutoProcessor": "jinaai/jina-clip-implementation--processing_clip.JinaCLIPProcessor"},
        "fill_color": 0, "image_processor_type": "JinaCLIPImageProcessor", "interpolation": "bicubic",
        "mean": [0.48145466, 0.4578275, 0.40821073], "processor_class": "JinaCLIPProcessor",
        "resize_mode": "shortest", "size": VIS["image_size"], "std": [0.26862954, 0.26130258, 0.27577711]}))


def load_service(folder: Path):
    """A ModelService for an unnamed folder, exactly as `--models /path` resolves it."""
    from jinaserve.config import Settings
    from jinaserve.engine.registry import load_service as _load

    return _load(str(folder), Settings(models=[str(folder)], device="cpu", threads=1, offline=True))


def _save(dst: Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dst / "model.safetensors"))
    (dst / "config.json").write_text(json.dumps(config, indent=2))


# ------------------------------------------------------------------------------------------------ jina-clip
def build_clip_v1(dst: Path, seed: int = 11) -> Built:
    g = torch.Generator().manual_seed(seed)
    text = jinabert_tensors(g, vocab=30522, hidden=TEXT_H, inter=TEXT_INTER, layers=TEXT_LAYERS)
    vis = eva_tensors(g, VIS)
    tensors = {**{f"text_model.transformer.{k}": v for k, v in text.items()},
               **{f"vision_model.{k}": v for k, v in vis.items()}, "logit_scale": torch.tensor(2.6592)}
    text_config = {"embed_dim": TEXT_H, "hf_model_config_kwargs": {"use_flash_attn": False},
                   "hf_model_name_or_path": "jinaai/jina-bert-flash-implementation", "model_type": "jina_clip_text",
                   "pooler_type": "mean_pooler", "proj_bias": False, "proj_type": None}
    vis_cfg = _vision_config(intp_freq=False, pt_hw_seq_len=VIS["image_size"] // VIS["patch_size"], x_attention=False)
    _save(dst, tensors, _clip_config(text_config, vis_cfg))
    copy_bert_tokenizer(dst)
    _preprocessor(dst)
    return Built(dst, tensors, extra={"vision_config": vis_cfg})


def _xlmr_native(vocab: int, seed: int, *, max_pos: int = 130, rope_theta: float = 20000.0):
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    torch.manual_seed(seed)
    cfg = JinaEmbeddingsV3Config(vocab_size=vocab, hidden_size=TEXT_H, num_hidden_layers=TEXT_LAYERS,
                                 num_attention_heads=TEXT_H // 64, intermediate_size=TEXT_INTER,
                                 max_position_embeddings=max_pos, layer_norm_eps=1e-5,
                                 rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    cfg._attn_implementation = "eager"
    model = JinaEmbeddingsV3Model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    return model


def flash_xlmr_tensors(native: dict[str, torch.Tensor], lora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
                       ) -> dict[str, torch.Tensor]:
    """Native JinaEmbeddingsV3Model tensors → the remote-code flash names under `roberta.` (hand-written), with
    `lora` given: parametrised weights with one stacked adapter (T = 1)."""
    out: dict[str, torch.Tensor] = {}
    R = "roberta."

    def put(module: str, weight: torch.Tensor, key: str | None) -> None:
        if lora is None:
            out[f"{R}{module}.weight"] = weight
            return
        a, b = lora[key]  # type: ignore[index]
        out[f"{R}{module}.parametrizations.weight.original"] = weight
        out[f"{R}{module}.parametrizations.weight.0.lora_A"] = a[None]
        out[f"{R}{module}.parametrizations.weight.0.lora_B"] = b[None]

    for emb in ("word_embeddings", "token_type_embeddings"):
        put(f"embeddings.{emb}", native[f"embeddings.{emb}.weight"], emb)
    out[f"{R}emb_ln.weight"], out[f"{R}emb_ln.bias"] = native["embeddings.LayerNorm.weight"], \
        native["embeddings.LayerNorm.bias"]
    for i in range(TEXT_LAYERS):
        n, r = f"layers.{i}.", f"encoder.layers.{i}."
        put(f"{r}mixer.Wqkv", torch.cat([native[f"{n}self_attn.{p}.weight"] for p in ("q_proj", "k_proj", "v_proj")]),
            f"{i}.Wqkv")
        out[f"{R}{r}mixer.Wqkv.bias"] = torch.cat([native[f"{n}self_attn.{p}.bias"] for p in ("q_proj", "k_proj",
                                                                                               "v_proj")])
        for remote, nat in (("mixer.out_proj", "self_attn.o_proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            put(f"{r}{remote}", native[f"{n}{nat}.weight"], f"{i}.{remote}")
            out[f"{R}{r}{remote}.bias"] = native[f"{n}{nat}.bias"]
        for remote, nat in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            out[f"{R}{r}{remote}.weight"], out[f"{R}{r}{remote}.bias"] = native[f"{n}{nat}.weight"], \
                native[f"{n}{nat}.bias"]
    return out


def xlmr_lora_factors(g: torch.Generator, vocab: int, rank: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Remote-code orientation: Linear A (r, in) / B (out, r); Embedding A (num, r) / B (r, dim)."""
    f = {"word_embeddings": (_rnd(g, vocab, rank, scale=0.5), _rnd(g, rank, TEXT_H, scale=0.5)),
         "token_type_embeddings": (_rnd(g, 1, rank, scale=0.5), _rnd(g, rank, TEXT_H, scale=0.5))}
    for i in range(TEXT_LAYERS):
        f[f"{i}.Wqkv"] = (_rnd(g, rank, TEXT_H), _rnd(g, 3 * TEXT_H, rank))
        f[f"{i}.mixer.out_proj"] = (_rnd(g, rank, TEXT_H), _rnd(g, TEXT_H, rank))
        f[f"{i}.mlp.fc1"] = (_rnd(g, rank, TEXT_H), _rnd(g, TEXT_INTER, rank))
        f[f"{i}.mlp.fc2"] = (_rnd(g, rank, TEXT_INTER), _rnd(g, TEXT_H, rank))
    return f


def build_clip_v2(dst: Path, seed: int = 12) -> Built:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "jina_v3"))
    from v3_builders import build_tokenizer

    dst.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(dst)
    native = _xlmr_native(vocab, seed, max_pos=8194)
    g = torch.Generator().manual_seed(seed + 1)
    lora = xlmr_lora_factors(g, vocab)
    text = flash_xlmr_tensors(native.state_dict(), lora)
    vis = eva_tensors(g, VIS)
    tensors = {**{f"text_model.transformer.{k}": v for k, v in text.items()},
               **{f"vision_model.{k}": v for k, v in vis.items()}, "logit_scale": torch.tensor(2.6592)}
    text_config = {"default_instruction_task": None, "default_lora_task": "retrieval.query", "embed_dim": TEXT_H,
                   "hf_model_config_kwargs": {"load_trained_adapters": False, "lora_adaptations": ["retrieval.query"],
                                              "lora_alpha": 4, "lora_dropout_p": 0.0,
                                              "lora_main_params_trainable": False, "lora_rank": 4,
                                              "task_instructions": {"retrieval.query": CLIP_V2_PREFIX},
                                              "use_flash_attn": True},
                   "hf_model_name_or_path": "jinaai/jina-embeddings-v3", "model_type": "jina_clip_text",
                   "pooler_type": "mean_pooler", "proj_bias": False, "proj_type": None}
    vis_cfg = _vision_config(intp_freq=True, pt_hw_seq_len=16, x_attention=True)
    _save(dst, tensors, _clip_config(text_config, vis_cfg, matryoshka_dimensions=[32, 64, 128]))
    _preprocessor(dst)
    return Built(dst, tensors, native=native, extra={"vision_config": vis_cfg, "lora": lora, "lora_scale": 4 / 4})


# ------------------------------------------------------------------------------------------------ jina-colbert
def _colbert_metadata(dst: Path, query: str, doc: str, attend: bool) -> None:
    (dst / "artifact.metadata").write_text(json.dumps({
        "query_token_id": query, "doc_token_id": doc, "query_token": "[Q]", "doc_token": "[D]", "ncells": None,
        "centroid_score_threshold": None, "ndocs": None, "similarity": "cosine", "bsize": 32, "accumsteps": 1,
        "lr": 1e-05, "maxsteps": 400000, "interaction": "colbert", "dim": 128, "doc_maxlen": 180,
        "mask_punctuation": True, "query_maxlen": 32, "attend_to_mask_tokens": attend, "checkpoint": None}))


def build_colbert_v1(dst: Path, seed: int = 21) -> Built:
    g = torch.Generator().manual_seed(seed)
    hidden, inter = 64, 48
    tensors = {f"bert.{k}": v for k, v in jinabert_tensors(g, vocab=30522, hidden=hidden, inter=inter,
                                                            layers=2).items()}
    tensors["linear.weight"] = _rnd(g, 128, hidden)
    _save(dst, tensors, jinabert_config("HF_ColBERT", hidden, inter, 2))
    copy_bert_tokenizer(dst)
    _colbert_metadata(dst, "[unused0]", "[unused1]", attend=False)
    return Built(dst, tensors)


def build_colbert_v2(dst: Path, seed: int = 22) -> Built:
    import sys

    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parents[1] / "jina_v3"))
    from v3_builders import build_tokenizer

    dst.mkdir(parents=True, exist_ok=True)
    build_tokenizer(dst)
    tok = AutoTokenizer.from_pretrained(str(dst))
    tok.add_special_tokens({"additional_special_tokens": ["[QueryMarker]", "[DocumentMarker]"]})
    tok.save_pretrained(str(dst))
    native = _xlmr_native(len(tok), seed, max_pos=8194, rope_theta=10000.0)
    g = torch.Generator().manual_seed(seed + 1)
    tensors = flash_xlmr_tensors(native.state_dict(), None)
    tensors["linear.weight"] = _rnd(g, 128, TEXT_H)
    config = {"architectures": ["HF_ColBERT"], "model_type": "xlm-roberta",
              "auto_map": {"AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta."
                                         "XLMRobertaFlashConfig",
                           "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta."
                                        "XLMRobertaModel"},
              "vocab_size": len(tok), "hidden_size": TEXT_H, "num_hidden_layers": TEXT_LAYERS,
              "num_attention_heads": TEXT_H // 64, "intermediate_size": TEXT_INTER, "hidden_act": "gelu",
              "layer_norm_eps": 1e-5, "max_position_embeddings": 8194, "type_vocab_size": 1, "pad_token_id": 1,
              "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "rotary", "rotary_emb_base": 10000.0,
              "use_flash_attn": True, "torch_dtype": "bfloat16"}
    _save(dst, tensors, config)
    _colbert_metadata(dst, "[QueryMarker]", "[DocumentMarker]", attend=True)
    return Built(dst, tensors, native=native)


# ------------------------------------------------------------------------------------------------ reranker v1
def build_reranker_v1(dst: Path, seed: int = 31) -> Built:
    g = torch.Generator().manual_seed(seed)
    hidden, inter = 64, 48
    tensors = {f"bert.{k}": v for k, v in jinabert_tensors(g, vocab=30522, hidden=hidden, inter=inter,
                                                            layers=2).items()}
    tensors["bert.pooler.dense.weight"], tensors["bert.pooler.dense.bias"] = _rnd(g, hidden, hidden), _rnd(g, hidden)
    tensors["classifier.weight"], tensors["classifier.bias"] = _rnd(g, 1, hidden, scale=0.5), _rnd(g, 1)
    config = jinabert_config("JinaBertForSequenceClassification", hidden, inter, 2, id2label={"0": "LABEL_0"},
                             label2id={"LABEL_0": 0})
    config["auto_map"]["AutoModelForSequenceClassification"] = \
        "jinaai/jina-bert-implementation--modeling_bert.JinaBertForSequenceClassification"
    _save(dst, tensors, config)
    copy_bert_tokenizer(dst)
    return Built(dst, tensors)
