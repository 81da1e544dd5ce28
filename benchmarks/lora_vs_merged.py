"""Runtime LoRA (PEFT) vs merged per-task weights, on random weights of the real layer shapes.

    .venv/bin/python benchmarks/lora_vs_merged.py [--layers 4] [--batch 8] [--seq 128] [--repeats 5]

For v5-text-small (Qwen3-0.6B shape: hidden 1024, 16 heads / 8 KV heads, head_dim 128, MLP 3072) and
v5-text-nano (EuroBERT-210m shape: hidden 768, 12 heads, MLP 3072), with the published adapter shape
(r 32, alpha 32 on q/k/v/o/gate/up/down), it times one forward pass of a batch:
  base    – the backbone without adapters (the floor),
  merged  – jinaserve's merged mode (task weights swapped in, then a plain forward),
  lora    – PEFT runtime LoRA (`set_adapter`, two extra low-rank matmuls per adapted Linear),
and the cost of switching task between batches, plus the memory each mode adds. Only `--layers` of the
real depth are built (speed per layer and memory per layer scale linearly with depth; the printed
memory figures are scaled to the full depth). Random weights: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "v5-text-small (Qwen3-0.6B)": ("qwen3", 28, dict(hidden_size=1024, intermediate_size=3072, num_attention_heads=16,
                                                     num_key_value_heads=8, head_dim=128)),
    "v5-text-nano (EuroBERT-210m)": ("eurobert", 12, dict(hidden_size=768, intermediate_size=3072,
                                                          num_attention_heads=12)),
}
TASKS = ("retrieval", "text-matching", "classification", "clustering")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(kind: str, layers: int, dims: dict, folder: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    cfg_cls, model_cls = (Qwen3Config, Qwen3Model) if kind == "qwen3" else (EuroBertConfig, EuroBertModel)
    cfg = cfg_cls(vocab_size=1024, num_hidden_layers=layers, max_position_embeddings=4096, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2, **({"mask_token_id": 3} if kind == "eurobert" else {}), **dims)
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(str(folder))
    for task in TASKS:
        peft = get_peft_model(model_cls(cfg), LoraConfig(r=32, lora_alpha=32, target_modules=TARGETS,
                                                         init_lora_weights=False))
        peft.save_pretrained(str(folder / "adapters" / task))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoConfig

    from jinaserve.models.jina_v5 import load_backbone
    from jinaserve.models.lora import load_adapters

    print(f"batch {args.batch} x {args.seq} tokens, {args.layers} layers built, fp32 CPU, {args.threads} thread(s)")
    for label, (kind, depth, dims) in SHAPES.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            build(kind, args.layers, dims, folder)
            config = AutoConfig.from_pretrained(str(folder))
            ids = torch.randint(4, 1024, (args.batch, args.seq))
            mask = torch.ones_like(ids)
            models = {}
            extra: dict[str, int] = {}
            switch: dict[str, float] = {}
            with torch.inference_mode():
                models["base"] = load_backbone(folder, config, device="cpu", dtype=torch.float32)
                layer_bytes = sum(p.numel() * p.element_size() for n, p in models["base"].named_parameters()
                                  if n.startswith("layers."))
                for mode in ("merged", "lora"):
                    model = load_backbone(folder, config, device="cpu", dtype=torch.float32)
                    adapters = load_adapters(model, folder, list(TASKS), mode)
                    if mode == "merged":  # 4 task copies of the adapted weights replace the 1 base copy
                        adapted = adapters.extra_bytes // len(TASKS)
                        extra[mode] = adapters.extra_bytes - adapted
                    else:
                        extra[mode] = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                                          if "lora_" in n)
                    order = iter(TASKS * (10 * args.repeats + 10))
                    switch[mode] = timed(lambda a=adapters, o=order: a.activate(next(o)), 10 * args.repeats)
                    adapters.activate("retrieval")
                    models[mode] = model
                samples: dict[str, list[float]] = {m: [] for m in models}
                for m in models.values():  # warm-up
                    m(input_ids=ids, attention_mask=mask)
                for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit all modes
                    for mode, m in models.items():
                        t = time.perf_counter()
                        m(input_ids=ids, attention_mask=mask)
                        samples[mode].append(time.perf_counter() - t)
                results = {mode: statistics.median(v) for mode, v in samples.items()}
                del models
            scale = depth / args.layers
            mib = layer_bytes * scale / 2**20
            print(f"\n{label}: full depth {depth} layers; transformer-layer weights {mib:.0f} MiB fp32 "
                  f"(memory below scaled to full depth)")
            for mode in ("base", "merged", "lora"):
                ratio = results[mode] / results["base"]
                mem = f", +{extra[mode] * scale / 2**20:.0f} MiB for 4 tasks" if mode in extra else ""
                sw = f", task switch {switch[mode] * 1e3:.2f} ms" if mode in switch else ""
                print(f"  {mode:7s} {results[mode] * 1e3:8.1f} ms/batch  x{ratio:.2f} of base{mem}{sw}")


if __name__ == "__main__":
    main()
