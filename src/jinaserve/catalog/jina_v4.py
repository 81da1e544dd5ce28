"""jina-embeddings-v4 (multimodal, Qwen2.5-VL-3B + 3 task LoRAs) and its per-task merged checkpoints."""

from __future__ import annotations

from .spec import ModelSpec, TaskSpec

_LICENCE = "Qwen Research License"
_MRL = (128, 256, 512, 1024, 2048)

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
        extra={"rerank_query_task": tasks[0], "rerank_document_task": tasks[-1], **_CLASSIFY},
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
        # a folder whose config names this architecture (e.g. an HF snapshot folder) is served with this row
        extra={"multivector_dims": 128, "detect_architectures": ("JinaEmbeddingsV4Model",), **_CLASSIFY},
    ),
    _merged("retrieval", ("retrieval.query", "retrieval.passage"), "retrieval.passage"),
    _merged("text-matching", ("text-matching",), "text-matching"),
    _merged("code", ("code.query", "code.passage"), "code.passage"),
]
