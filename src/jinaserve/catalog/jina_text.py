"""Jina text embedding models other than v3: v5-text (small, nano, per-task merged repos),
code-embeddings (0.5b, 1.5b) and v2 (JinaBERT).

Facts: docs/reference/hosted-api.md, sections "Embeddings request fields per model", "Embeddings
behaviour" (default tasks), "Model catalogue", "Per-model mechanics" (prefixes, pooling).
`extra["adapter_mode"]` is the measured choice between merged per-task weights and runtime LoRA
(benchmarks/lora_vs_merged.py, docs/models/jina-text.md).
"""

from __future__ import annotations

from .spec import Detect, ModelSpec, TaskSpec

V5_TASKS = ("retrieval", "text-matching", "classification", "clustering")
V5_QUERY, V5_DOCUMENT = "Query: ", "Document: "


def _v5_tasks(adapter_of: dict[str, str | None]) -> tuple[TaskSpec, ...]:
    """The hosted API's five v5 tasks → (LoRA adapter, prompt prefix)."""
    rows = [
        TaskSpec("retrieval.query", adapter_of.get("retrieval"), V5_QUERY, "search queries"),
        TaskSpec("retrieval.passage", adapter_of.get("retrieval"), V5_DOCUMENT, "documents to be searched"),
        TaskSpec("text-matching", adapter_of.get("text-matching"), V5_DOCUMENT, "symmetric similarity (default)"),
        TaskSpec("classification", adapter_of.get("classification"), V5_DOCUMENT, "features for classifiers"),
        TaskSpec("clustering", adapter_of.get("clustering"), V5_DOCUMENT, "features for clustering"),
    ]
    return tuple(t for t in rows if t.name.split(".")[0] in adapter_of)


V5_SIZES = {
    # size: (backbone, dims, matryoshka, max tokens, params, adapter mode, description)
    "small": ("qwen3", 1024, (32, 64, 128, 256, 512, 768, 1024), 32768, "677M", "auto",
              "Qwen3-0.6B-Base + 4 task LoRAs; multilingual text embeddings"),
    "nano": ("eurobert", 768, (32, 64, 128, 256, 512, 768), 8192, "239M", "merged",
             "EuroBERT-210M (bidirectional) + 4 task LoRAs; multilingual text embeddings"),
}


V5_ARCH = ("JinaEmbeddingsV5Model",)
V5_PROMPTS = {"query": V5_QUERY, "document": V5_DOCUMENT}  # config_sentence_transformers.json of the repos
# the -nano config says `is_decoder: false` (EuroBERT is bidirectional); the -small (Qwen3) does not
_V5_SIZE = {"small": {}, "nano": {"is_decoder": False}}


def _v5_detect(size: str, backbone: str, merged: bool) -> tuple[Detect, ...]:
    """Base repos: the remote-code wrapper config + `adapters/<task>/`. Per-task merged repos: the same
    wrapper without adapters/, or a plain sentence-transformers backbone with the v5 prompts; the four
    tasks of one size look alike, so the task is taken from a name the folder gives itself."""
    if not merged:
        return (Detect(architectures=V5_ARCH, files=("adapters/*/adapter_config.json",), config=_V5_SIZE[size],
                       layout=f"v5-text-{size} with the adapters/<task>/ PEFT folders"),)
    return (Detect(architectures=V5_ARCH, no_files=("adapters",), config=_V5_SIZE[size],
                   layout=f"v5-text-{size} with one task adapter merged"),
            Detect(model_type=(backbone,), st_prompts=V5_PROMPTS,
                   layout=f"v5-text-{size} with one task adapter merged (sentence-transformers layout)"))


def _v5_rows() -> list[ModelSpec]:
    rows: list[ModelSpec] = []
    for size, (backbone, dims, mrl, max_tokens, params, mode, desc) in V5_SIZES.items():
        base_id = f"jina-embeddings-v5-text-{size}"
        extra = {"backbone": backbone, "padding_side": "right", "adapter_mode": mode,
                 # /v1/classify: inputs and labels through the classification LoRA (docs/classify.md)
                 "classify_input_task": "classification", "classify_label_task": "classification"}
        rows.append(ModelSpec(
            id=base_id, family="jina_v5", kind="embedding", hf_repo=f"jinaai/{base_id}",
            tasks=_v5_tasks({t: t for t in V5_TASKS}), default_task="text-matching", pooling="last",
            dims=dims, matryoshka_dims=mrl, max_tokens=max_tokens, licence="CC-BY-NC-4.0", params=params,
            description=desc, extra=extra, detect=_v5_detect(size, backbone, merged=False)))
        for task in V5_TASKS:
            # Per-task merged repos: the task's LoRA is already in the weights (no adapters/ folder).
            tasks = _v5_tasks({task: None})
            default = "retrieval.passage" if task == "retrieval" else task
            rows.append(ModelSpec(
                id=f"{base_id}-{task}", family="jina_v5", kind="embedding", hf_repo=f"jinaai/{base_id}-{task}",
                tasks=tasks, default_task=default, pooling="last", dims=dims, matryoshka_dims=mrl,
                max_tokens=max_tokens, licence="CC-BY-NC-4.0", params=params,
                description=f"{base_id} with the {task} adapter merged into the weights",
                extra={"backbone": backbone, "padding_side": "right"}, detect=_v5_detect(size, backbone, merged=True)))
    return rows


CODE_PROMPTS = {
    "nl2code": ("Find the most relevant code snippet given the following query:\n", "Candidate code snippet:\n"),
    "qa": ("Find the most relevant answer given the following question:\n", "Candidate answer:\n"),
    "code2code": ("Find an equivalent code snippet given the following code snippet:\n",
                  "Candidate code snippet:\n"),
    "code2nl": ("Find the most relevant comment given the following code snippet:\n", "Candidate comment:\n"),
    "code2completion": ("Find the most relevant completion given the following start of code snippet:\n",
                        "Candidate completion:\n"),
}

CODE_TASKS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(f"{name}.{role}", None, prompt, f"{name} {role}")
    for name, (query, passage) in CODE_PROMPTS.items()
    for role, prompt in (("query", query), ("passage", passage))
)


def _code_detect(hidden: int, default: bool) -> tuple[Detect, ...]:
    """A stock Qwen2 checkpoint whose sentence-transformers config carries the published task prompts
    (prompt names `<task>_query` / `<task>_document`); the hidden size tells the two sizes apart."""
    prompts = {"nl2code_query": CODE_PROMPTS["nl2code"][0], "nl2code_document": CODE_PROMPTS["nl2code"][1]}
    layout = "Qwen2 + sentence-transformers task prompts"
    return (Detect(model_type=("qwen2",), st_prompts=prompts, config={"hidden_size": hidden}, layout=layout),
            Detect(model_type=("qwen2",), st_prompts=prompts, priority=int(default), layout=layout))


def _code_rows() -> list[ModelSpec]:
    sizes = {"0.5b": (896, (64, 128, 256, 512, 896), "494M"), "1.5b": (1536, (128, 256, 512, 1024, 1536), "1.54B")}
    return [ModelSpec(
        id=f"jina-code-embeddings-{size}", family="jina_code", kind="embedding",
        hf_repo=f"jinaai/jina-code-embeddings-{size}", tasks=CODE_TASKS, default_task="nl2code.query",
        pooling="last", dims=dims, matryoshka_dims=mrl, max_tokens=32768, licence="CC-BY-NC-4.0", params=params,
        description=f"Qwen2.5-Coder-{size.upper()} code embeddings; task = instruction prefix",
        extra={"backbone": "qwen2", "padding_side": "left",
               "rerank_query_task": "nl2code.query", "rerank_document_task": "nl2code.passage",
               # /v1/classify: code is the code2nl query, each label a candidate comment (docs/classify.md)
               "classify_input_task": "code2nl.query", "classify_label_task": "code2nl.passage"},
        detect=_code_detect(dims, default=size == "0.5b"),
    ) for size, (dims, mrl, params) in sizes.items()]


def _v2_detect(variant: str) -> tuple[Detect, ...]:
    """JinaBERT: `architectures` JinaBertForMaskedLM (JinaBertModel in some copies) with `model_type: bert`.
    base-code is told apart by its qk-post-norm remote code, small-en by its 512-wide hidden size;
    base-en is the default among the look-alike base variants (a name the folder gives itself picks
    -de/-es/-zh)."""
    jinabert = {"architectures": ("JinaBertForMaskedLM", "JinaBertModel"), "model_type": ("bert",)}
    if variant == "base-code":
        return (Detect(**jinabert, auto_map=("jina-bert-v2-qk-post-norm",), layout="JinaBERT v2, qk-post-norm"),)
    if variant == "small-en":
        return (Detect(**jinabert, config={"hidden_size": 512}, layout="JinaBERT v2 (ALiBi, GLU)"),)
    return (Detect(**jinabert, priority=int(variant == "base-en"), layout="JinaBERT v2 (ALiBi, GLU)"),)


def _v2_rows() -> list[ModelSpec]:
    variants = {
        "base-en": (768, "137M", "English"),
        "base-de": (768, "161M", "German/English bilingual"),
        "base-es": (768, "161M", "Spanish/English bilingual"),
        "base-zh": (768, "161M", "Chinese/English bilingual"),
        "base-code": (768, "137M", "English + 30 programming languages (JinaBERT qk-post-norm)"),
        "small-en": (512, "33M", "English, small (not in the hosted API's current list)"),
    }
    return [ModelSpec(
        id=f"jina-embeddings-v2-{v}", family="jina_v2", kind="embedding", hf_repo=f"jinaai/jina-embeddings-v2-{v}",
        pooling="mean", dims=dims, max_tokens=8192, licence="Apache-2.0", params=params, fp32_only=True,
        description=f"JinaBERT (ALiBi) {desc}; mean pooling", detect=_v2_detect(v),
    ) for v, (dims, params, desc) in variants.items()]


ROWS: list[ModelSpec] = [*_v5_rows(), *_code_rows(), *_v2_rows()]
