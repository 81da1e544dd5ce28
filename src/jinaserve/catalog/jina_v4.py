"""jina-embeddings-v4 (multimodal, Qwen2.5-VL-3B + 3 task LoRAs) and its per-task merged checkpoints."""

from __future__ import annotations

from .spec import Detect, ModelSpec, TaskSpec

_LICENCE = "Qwen Research License"
_MRL = (128, 256, 512, 1024, 2048)
# Image bounds of the main v4 repo, the v4 reference (min, max pixels). The -vllm-* repos ship a
# preprocessor allowing 12,845,056 pixels: their rows use these instead, so one image gives one patch
# grid, one token count and one vector on every v4 row (docs/checkpoints.md "Image bounds"). The main row
# reads its own preprocessor_config.json, which is the reference.
V4_REFERENCE_PIXELS = (3136, 602112)

V4_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("retrieval.query", "retrieval", "Query: ", "Queries for asymmetric retrieval (text or image corpus)"),
    TaskSpec("retrieval.passage", "retrieval", "Passage: ", "Documents / passages / images to retrieve"),
    TaskSpec("text-matching", "text-matching", "Query: ", "Symmetric similarity (STS), the default"),
    TaskSpec("code.query", "code", "Query: ", "Natural-language queries for code retrieval"),
    TaskSpec("code.passage", "code", "Passage: ", "Code snippets to retrieve"),
)


# /v1/classify: labels are embedded as retrieval queries, inputs (text or images) as retrieval passages, the
# adapter v4 uses for text-to-image search (docs/classify.md). Rows without these tasks use their default task.
_CLASSIFY = {"classify_input_task": "retrieval.passage", "classify_label_task": "retrieval.query"}


def _merged(task: str, tasks: tuple[str, ...], default: str) -> ModelSpec:
    rows = tuple(TaskSpec(t.name, None, t.prefix, t.description) for t in V4_TASKS if t.name in tasks)
    return ModelSpec(
        id=f"jina-embeddings-v4-vllm-{task}",
        family="jina_v4",
        kind="embedding",
        hf_repo=f"jinaai/jina-embeddings-v4-vllm-{task}",
        tasks=rows,
        default_task=default,
        pooling="mean",
        dims=2048,
        matryoshka_dims=_MRL,
        max_tokens=32768,
        licence=_LICENCE,
        params="3.8B",
        description=f"jina-embeddings-v4 with the {task} LoRA merged (text + images; no multi-vector output).",
        options=frozenset({"late_chunking"}),
        extra={"rerank_query_task": tasks[0], "rerank_document_task": tasks[-1], "image_pixels": V4_REFERENCE_PIXELS,
               **_CLASSIFY},
        # The -vllm-* config is stock Qwen2.5-VL (no adapters/, no projector): the three repos look alike, so
        # a folder is matched to one of them only by a name it gives itself (HF cache path, model card title).
        detect=(Detect(architectures=("Qwen2_5_VLForConditionalGeneration",), model_type=("qwen2_5_vl",),
                       no_files=("adapters",), layout="v4 with one task LoRA merged (-vllm-*)"),),
    )


ROWS: list[ModelSpec] = [
    ModelSpec(
        id="jina-embeddings-v4",
        family="jina_v4",
        kind="embedding",
        hf_repo="jinaai/jina-embeddings-v4",
        aliases=("jina-embeddings-v4-base",),
        tasks=V4_TASKS,
        default_task="text-matching",
        pooling="mean",
        dims=2048,
        matryoshka_dims=_MRL,
        max_tokens=32768,
        licence=_LICENCE,
        params="3.8B",
        description="Multimodal multilingual embeddings (text, images, visual documents); 2048-d single vectors "
        "or 128-d per-token multi-vectors; retrieval / text-matching / code LoRAs.",
        options=frozenset({"return_multivector", "late_chunking"}),
        extra={"multivector_dims": 128, **_CLASSIFY},
        detect=(Detect(architectures=("JinaEmbeddingsV4Model",), layout="v4 with the adapters/ PEFT folder"),
                Detect(model_type=("qwen2_5_vl",), files=("adapters/adapter_config.json",),
                       layout="v4 with the adapters/ PEFT folder")),
    ),
    _merged("retrieval", ("retrieval.query", "retrieval.passage"), "retrieval.passage"),
    _merged("text-matching", ("text-matching",), "text-matching"),
    _merged("code", ("code.query", "code.passage"), "code.passage"),
]
