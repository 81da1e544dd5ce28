"""Build a tiny random-weight jina-embeddings-v4 checkpoint in the published repo layout.

Layout written (what `jinaai/jina-embeddings-v4` ships, as far as verified — see the v4 family docs):

    config.json                  Qwen2.5-VL config + `task_names`, `multi_vector_projector_dim`
    model.safetensors            backbone in the legacy key layout (`model.layers.*`, `visual.*`,
                                 `lm_head.*`) + top-level `multi_vector_projector.{weight,bias}`
    adapters/adapter_config.json one PEFT LoRA config for all tasks
    adapters/adapter_model.safetensors
                                 `base_model.model.<module>.lora_{A,B}.<task>.weight` per task
    tokenizer.json / tokenizer_config.json, preprocessor_config.json (Qwen2-VL image processor)

Also `build_tiny_v4_merged` for the `-vllm-<task>` layout (adapter merged, no projector, no adapters/).
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
TASKS = ["retrieval", "text-matching", "code"]
HIDDEN = 64
CORPUS = [
    "Query: Passage: Describe the image. user assistant",
    "the quick brown fox jumps over the lazy dog", "a cat sits on a mat", "def add(a, b): return a + b",
    "embeddings of images and text share one vector space", "hello world", "Berlin is the capital of Germany",
    "search engines rank documents by relevance to a query", "red green blue yellow", "0123456789",
]


def _tokenizer(dst: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL[1:])
    fast.save_pretrained(str(dst))
    return {t: tok.token_to_id(t) for t in SPECIAL} | {"__vocab__": tok.get_vocab_size()}


def _config(ids: dict[str, int]):
    from transformers import Qwen2_5_VLConfig

    vocab = ids["__vocab__"] + 16
    return Qwen2_5_VLConfig(
        text_config={"vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "rope_theta": 10000.0,
                     "sliding_window": None, "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "tie_word_embeddings": True},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": HIDDEN, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
                       "tokens_per_second": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _legacy_key(key: str) -> str:
    """transformers-5 module names → the legacy layout of the published checkpoint."""
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    if key.startswith("model.visual."):
        return key[len("model."):]
    return key


def _preprocessor(dst: Path, max_pixels: int) -> None:
    (dst / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "rescale_factor": 0.00392156862745098, "resample": 3,
        "min_pixels": 56 * 56, "max_pixels": max_pixels, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2}, indent=1))


def build_tiny_v4(dst: Path, *, seed: int = 0, rank: int = 4, alpha: float = 8.0, max_pixels: int = 112 * 112) \
        -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    dst.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ids = _tokenizer(dst)
    config = _config(ids)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    state = {_legacy_key(k): v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    proj = torch.nn.Linear(HIDDEN, 128, bias=True)
    state["multi_vector_projector.weight"] = proj.weight.detach().clone()
    state["multi_vector_projector.bias"] = proj.bias.detach().clone()
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict()
    # the published config is flat (text parameters at the top level, vision_config nested)
    text = cfg.pop("text_config")
    for key, value in text.items():
        if key not in ("model_type", "architectures", "dtype", "torch_dtype", "transformers_version"):
            cfg.setdefault(key, value)
    cfg.update({"architectures": ["JinaEmbeddingsV4Model"], "task_names": TASKS,
                "multi_vector_projector_dim": 128, "single_vector_pool_strategy": "mean",
                "matryoshka_dims": [16, 32, 64], "truncate_dim": None})
    (dst / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
    _preprocessor(dst, max_pixels)

    # One PEFT folder with per-task A/B matrices (MultiAdapterLinear layout).
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and n.startswith("model.language_model.")
             and n.rsplit(".", 1)[-1] in targets]
    g = torch.Generator().manual_seed(seed + 1)
    for name in [*names, "multi_vector_projector"]:
        lin = proj if name == "multi_vector_projector" else modules[name]
        # layer 1 uses the legacy module names (`model.layers.1...`), the rest the current ones
        # (`model.language_model.layers.0...`): the loader must map both
        key = "base_model.model." + (_legacy_key(name) if ".layers.1." in name else name)
        for t in TASKS:
            lora[f"{key}.lora_A.{t}.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.2
            lora[f"{key}.lora_B.{t}.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.2
    (dst / "adapters").mkdir(exist_ok=True)
    save_file(lora, str(dst / "adapters" / "adapter_model.safetensors"), metadata={"format": "pt"})
    (dst / "adapters" / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": "(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$"
                          "|.*(multi_vector_projector).*$)",
        "use_rslora": False, "use_dora": False, "task_type": "FEATURE_EXTRACTION"}, indent=1))
    return dst


def build_tiny_v4_merged(src: Path, dst: Path, task: str) -> Path:
    """The `-vllm-<task>` layout: `task`'s LoRA merged into the backbone, no adapters, no projector."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    state = load_file(str(src / "model.safetensors"))
    lora = load_file(str(src / "adapters" / "adapter_model.safetensors"))
    acfg = json.loads((src / "adapters" / "adapter_config.json").read_text())
    scale = acfg["lora_alpha"] / acfg["r"]
    for key, a in lora.items():
        if f".lora_A.{task}." not in key or "multi_vector_projector" in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
        wkey = _legacy_key(module) + ".weight"
        state[wkey] = (state[wkey].float() + (b.float() @ a.float()) * scale).to(state[wkey].dtype)
    state = {k: v for k, v in state.items() if "multi_vector_projector" not in k}
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    for k in ("task_names", "multi_vector_projector_dim", "single_vector_pool_strategy", "matryoshka_dims",
              "truncate_dim"):
        cfg.pop(k, None)
    (dst / "config.json").write_text(json.dumps(cfg, indent=1))
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(src / name, dst / name)
    _ = torch  # imported for dtype handling above
    return dst


def make_png(path: Path | None = None, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30),
             fmt: str = "PNG") -> bytes:
    """A small generated image (a coloured square with a contrasting stripe), as bytes."""
    from io import BytesIO

    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    draw.rectangle([size[0] // 4, 0, size[0] // 2, size[1]], fill=tuple(255 - c for c in color))
    buf = BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


PNG = make_png()
PNG2 = make_png(size=(40, 70), color=(20, 160, 90))
JPEG = make_png(size=(90, 60), color=(30, 60, 220), fmt="JPEG")
