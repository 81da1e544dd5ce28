"""jina-embeddings-v3 task adapters: LoRA applied at run time vs merged per-task weights.

    .venv/bin/python benchmarks/v3_adapters.py [--layers 24] [--batch 8] [--seq 128] [--repeats 3] [--rounds 3]
        [--threads 1] [--device cpu|cuda] [--dtype float32|bfloat16]

Builds a random-weight `JinaEmbeddingsV3Model` of the real XLM-R-large shape (hidden 1024, 16 heads, MLP 4096;
`--layers` of the real 24, `--vocab` rows of the real 250002: speed per layer and memory per layer scale
linearly, the printed memory is scaled to the full model) with rank-4 LoRA factors for two tasks on every
Linear (q/k/v/o/fc1/fc2) and both embedding tables — the published adapter shape — and times one forward pass
of a batch with jinaserve's own adapter modules (`jinaserve.models.jina_v3`):
  base     – no task (no adapter): the floor,
  merged   – a task active, its merged weights W + B·A·α/r used directly (what `merged` mode serves),
  runtime  – a task active, the rank-4 factors added per call: x·W + (x·Aᵀ)·Bᵀ·s.
and the one-time cost of merging a task (what its first request pays in merged mode, or the load pays with
JINASERVE_V3_PREMERGE).
Embedding LoRA is a gather of 4 columns in both modes. Weight values do not change the speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

FULL_LAYERS, FULL_VOCAB, RANK = 24, 250002, 4


def build(layers: int, vocab: int):
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model
    from transformers.initialization import no_init_weights

    cfg = JinaEmbeddingsV3Config(vocab_size=vocab, num_hidden_layers=layers, max_position_embeddings=8194)
    cfg._attn_implementation = "sdpa"
    with no_init_weights():
        model = JinaEmbeddingsV3Model(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def random_adapters(model, tasks: list[str]):
    from jinaserve.models.jina_v3_layout import LoRAWeight

    g = torch.Generator().manual_seed(1)
    out = {}
    for task in tasks:
        adapters = {}
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not name.startswith("pooler"):
                out_f, in_f = module.weight.shape
                adapters[name] = LoRAWeight("linear", torch.randn(RANK, in_f, generator=g) * 0.02,
                                            torch.randn(out_f, RANK, generator=g) * 0.02, 0.25)
            elif isinstance(module, torch.nn.Embedding):
                num, dim = module.weight.shape
                adapters[name] = LoRAWeight("embedding", torch.randn(num, RANK, generator=g) * 0.02,
                                            torch.randn(RANK, dim, generator=g) * 0.02, 0.25)
        out[task] = adapters
    return out


def uninstall(model) -> None:
    from jinaserve.models.jina_v3 import TaskEmbedding, TaskLinear

    for name, module in list(model.named_modules()):
        if isinstance(module, TaskLinear | TaskEmbedding):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, module.base)


def timed(fn, repeats: int, clock) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t = clock()
        fn()
        samples.append(clock() - t)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=FULL_LAYERS)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per mode per round")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds over the modes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    from jinaserve.models.jina_v3 import install_adapters

    model = build(args.layers, args.vocab).to(device=args.device, dtype=dtype)
    tasks = ["retrieval_query", "retrieval_passage"]
    adapters = random_adapters(model, tasks)
    ids = torch.randint(5, args.vocab, (args.batch, args.seq), device=args.device)
    mask = torch.ones_like(ids)

    def run(active, name):
        def fn():
            active.name = name
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
            if args.device == "cuda":
                torch.cuda.synchronize()
            active.name = None
        return fn

    # On CPU the clock is the process CPU time (with --threads 1 all the work runs in this thread), so a machine
    # shared with other jobs does not distort the comparison; on CUDA it is wall time after a synchronize.
    # Round-robin over the modes, median per mode.
    clock = time.perf_counter if args.device == "cuda" else time.process_time
    samples: dict[str, list[float]] = {"base": [], "merged": [], "runtime": []}
    for _ in range(args.rounds):
        for mode in ("merged", "runtime"):
            active = install_adapters(model, adapters, mode)  # type: ignore[arg-type]
            if mode == "merged":
                samples["base"].append(timed(run(active, None), args.repeats, clock))
            samples[mode].append(timed(run(active, tasks[0]), args.repeats, clock))
            uninstall(model)
    results = {mode: statistics.median(v) for mode, v in samples.items()}

    # What the first request of a task pays in merged mode (or JINASERVE_V3_PREMERGE pays at load time):
    # building W + B·A·s for every Linear of the encoder, in fp32, cast to the model dtype.
    from jinaserve.models.jina_v3 import TaskLinear

    merge_times = []
    for _ in range(args.rounds):
        install_adapters(model, adapters, "merged")
        linears = [m for m in model.modules() if isinstance(m, TaskLinear)]
        t = clock()
        with torch.inference_mode():
            for m in linears:
                m.merge(tasks[0])
        if args.device == "cuda":
            torch.cuda.synchronize()
        merge_times.append(clock() - t)
        uninstall(model)
    merge_s = statistics.median(merge_times) / args.layers * FULL_LAYERS

    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.startswith("pooler"))
    per_layer = linear / args.layers
    elt = torch.tensor([], dtype=dtype).element_size()
    merged_gib = per_layer * FULL_LAYERS * elt / 2**30
    factor_params = sum(w.a.numel() + w.b.numel() for n, w in adapters[tasks[0]].items() if "embeddings" not in n)
    runtime_mib = factor_params / args.layers * FULL_LAYERS * elt / 2**20
    tokens = args.batch * args.seq
    print(f"jina-embeddings-v3 shape, {args.layers}/{FULL_LAYERS} layers, batch {args.batch}x{args.seq} "
          f"({tokens} tokens), {args.device} {args.dtype}, {args.threads} thread(s), "
          f"median of {args.rounds}x{args.repeats}, {'wall' if args.device == 'cuda' else 'CPU'} time")
    for mode in ("base", "merged", "runtime"):
        t = results[mode]
        print(f"  {mode:8s} {t * 1000:9.1f} ms/batch  {tokens / t:8.0f} tok/s  x{t / results['base']:.3f} vs base")
    print(f"  (samples ms: {', '.join(f'{m}=' + '/'.join(f'{x * 1000:.0f}' for x in v) for m, v in samples.items())})")
    print(f"  runtime / merged = {results['runtime'] / results['merged']:.3f}")
    print(f"  one-time merge of a task (scaled to {FULL_LAYERS} layers): {merge_s * 1000:.0f} ms")
    print(f"  extra memory per task (full 24-layer model): merged {merged_gib:.2f} GiB, runtime "
          f"{runtime_mib:.1f} MiB (+ embedding factors, same in both modes)")


if __name__ == "__main__":
    main()
