"""Where Jina's published GGUF files live, for the llama.cpp runtime (`--runtime llamacpp --quant Q8_0`).

`GGUF_SPECS` attaches a `GGUFSpec` to rows defined in the other catalog modules (the same model
served through llama.cpp: same tasks, prefixes, pooling, Matryoshka dims); `ROWS` holds the models that
exist only as GGUF (jina-embeddings-v4-text-*: v4's language model with one task LoRA merged, no vision).

File names follow Jina's repos, `<repo name without -GGUF>-<QUANT>.gguf` (e.g.
`jina-reranker-v3-Q8_0.gguf`, `jina-embeddings-v4-text-code-Q8_0.gguf`); they are stored as glob
patterns (`*-Q8_0.gguf`), so `jinaserve pull --quant` downloads exactly that one file and a renamed
upload still matches. Sources: docs/reference/hosted-api.md
"GGUF files and llama.cpp", the repos' file listings and cards.
"""

from __future__ import annotations

from .spec import GGUFSpec, ModelSpec, TaskSpec

# The quantisations Jina publishes (F16 or BF16 down to the imatrix IQ1_S).
STANDARD_QUANTS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K",
                   "IQ4_NL", "IQ4_XS", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_XXS", "IQ1_M", "IQ1_S")
RERANKER_V3_QUANTS = ("BF16", *STANDARD_QUANTS[1:])


def quant_pattern(quant: str) -> str:
    return f"*-{quant}.gguf"


def gguf(repo: str, quants: tuple[str, ...] = STANDARD_QUANTS, default: str = "F16",
         extra_files: tuple[str, ...] = ()) -> GGUFSpec:
    return GGUFSpec(repo=repo, files={q: quant_pattern(q) for q in quants}, default_quant=default,
                    extra_files=extra_files)


V5_TASKS = ("retrieval", "text-matching", "classification", "clustering")

# catalog id -> its GGUF files (rows defined in jina_text.py / rerankers.py)
GGUF_SPECS: dict[str, GGUFSpec] = {
    **{f"jina-embeddings-v5-text-{size}-{task}": gguf(f"jinaai/jina-embeddings-v5-text-{size}-{task}-GGUF")
       for size in ("small", "nano") for task in V5_TASKS},
    **{f"jina-code-embeddings-{size}": gguf(f"jinaai/jina-code-embeddings-{size}-GGUF") for size in ("0.5b", "1.5b")},
    # the projector is not in the GGUF: it is applied in torch after llama.cpp's token hidden states
    "jina-reranker-v3": gguf("jinaai/jina-reranker-v3-GGUF", RERANKER_V3_QUANTS, default="Q8_0",
                             extra_files=("projector.safetensors",)),
}

_V4_MRL = (128, 256, 512, 1024, 2048)
_V4_TEXT = {
    # id suffix: (tasks, default task, description)
    "retrieval": ((TaskSpec("retrieval.query", None, "Query: ", "search queries"),
                   TaskSpec("retrieval.passage", None, "Passage: ", "documents to be searched")),
                  "retrieval.passage", "text retrieval"),
    "code": ((TaskSpec("code.query", None, "Query: ", "natural-language queries for code"),
              TaskSpec("code.passage", None, "Passage: ", "code snippets to retrieve")),
             "code.passage", "code retrieval"),
    "matching": ((TaskSpec("text-matching", None, "Query: ", "symmetric similarity"),),
                 "text-matching", "sentence similarity"),
}

ROWS: list[ModelSpec] = [
    ModelSpec(
        id=f"jina-embeddings-v4-text-{name}",
        family="gguf_text",
        kind="embedding",
        hf_repo=None,
        tasks=tasks,
        default_task=default,
        pooling="mean",
        dims=2048,
        matryoshka_dims=_V4_MRL,
        max_tokens=32768,
        licence="Qwen Research License",
        params="3.09B",
        description=f"jina-embeddings-v4 language model with the {desc} LoRA merged; GGUF only "
        f"(--runtime llamacpp): text only, no multi-vector output.",
        gguf=gguf(f"jinaai/jina-embeddings-v4-text-{name}-GGUF"),
        extra={"rerank_query_task": tasks[0].name, "rerank_document_task": tasks[-1].name,
               "padding_side": "right"},
    )
    for name, (tasks, default, desc) in _V4_TEXT.items()
]
