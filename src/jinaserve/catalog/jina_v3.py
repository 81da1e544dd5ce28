"""jina-embeddings-v3: XLM-RoBERTa + RoPE with five task LoRA adapters (served natively, no remote code).

Facts (docs/reference/hosted-api.md: "Embeddings request fields per model", "Per-model mechanics"; HF model
cards):
- `adapter` is the sub-folder of the task's PEFT adapter in `jinaai/jina-embeddings-v3-hf`; the original
  remote-code checkpoint (`jinaai/jina-embeddings-v3`) keeps all five stacked in the main weights, indexed by
  the position of the task in its `lora_adaptations` config list (mapped in `models/jina_v3_layout.py`).
- No task = the base model: no adapter and no prefix (measured on the hosted API).
"""

from __future__ import annotations

from .spec import Detect, ModelSpec, TaskSpec

V3_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("retrieval.query", adapter="retrieval_query",
             prefix="Represent the query for retrieving evidence documents: ",
             description="Query embeddings for asymmetric retrieval"),
    TaskSpec("retrieval.passage", adapter="retrieval_passage",
             prefix="Represent the document for retrieval: ",
             description="Passage embeddings for asymmetric retrieval"),
    TaskSpec("separation", adapter="separation",
             description="Clustering and re-ranking"),
    TaskSpec("classification", adapter="classification",
             description="Classification"),
    TaskSpec("text-matching", adapter="text_matching",
             description="Semantic similarity / symmetric retrieval"),
)

ROWS: list[ModelSpec] = [
    ModelSpec(
        id="jina-embeddings-v3",
        family="jina_v3",
        kind="embedding",
        hf_repo="jinaai/jina-embeddings-v3-hf",
        aliases=("jinaai/jina-embeddings-v3", "jina-embeddings-v3-hf"),
        tasks=V3_TASKS,
        default_task=None,
        pooling="mean",
        dims=1024,
        matryoshka_dims=(32, 64, 128, 256, 512, 768, 1024),
        max_tokens=8192,
        licence="CC-BY-NC-4.0",
        params="570M",
        description="Multilingual XLM-RoBERTa + RoPE, 5 task LoRA adapters, Matryoshka, late chunking.",
        options=frozenset({"late_chunking"}),
        # a folder of either published layout is served with this row whatever it is called (docs/checkpoints.md)
        detect=(
            Detect(model_type=("jina_embeddings_v3",), layout="native -hf layout (PEFT task adapter folders)"),
            Detect(architectures=("JinaEmbeddingsV3Model",), layout="native -hf layout (PEFT task adapter folders)"),
            # the original repo: `auto_map` to Jina's remote code and `lora_adaptations`, whatever `architectures`
            # says (copies show XLMRobertaLoRA and XLMRobertaModel)
            Detect(auto_map=("modeling_lora.XLMRobertaLoRA",), layout="remote-code layout (stacked task LoRAs)"),
            Detect(model_type=("xlm-roberta",), config_keys=("lora_adaptations",),
                   layout="remote-code layout (stacked task LoRAs)"),
            Detect(architectures=("XLMRobertaLoRA",), layout="remote-code layout (stacked task LoRAs)"),
        ),
        extra={
            # The remote-code checkpoint's adapter order (config `lora_adaptations`); used when a folder in
            # that layout has no such list in its config.
            "lora_adaptations": ["retrieval.query", "retrieval.passage", "separation", "classification",
                                 "text-matching"],
            # /v1/classify embeds inputs and labels with the classification adapter (docs/classify.md).
            "classify_input_task": "classification", "classify_label_task": "classification",
            # No published GGUF: how to make one (llama.cpp's converter on the original layout).
            "gguf_convert": "the original layout jinaai/jina-embeddings-v3; it writes one lora-<task>-<file> "
                            "adapter per task next to it",
        },
    ),
]
