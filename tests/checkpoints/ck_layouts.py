"""Tiny checkpoints of every catalog family in their published layouts, for the recognition tests.

The weights come from the other test folders' builders (imported by path, as `tests/gguf` does); what
is added here are the published files those builders leave out and the layout variants a real download
has (docs/checkpoints.md lists each fact with its public source):

* v5-text base repos: `modules.json` with one `custom_st.Transformer` module and
  `config_sentence_transformers.json` with the prompts {"query": "Query: ", "document": "Document: "};
* v5-text per-task merged repos: no `adapters/`; the -nano one as a plain sentence-transformers
  checkpoint (EuroBERT config → Pooling lasttoken → Normalize, same prompts);
* code-embeddings: a stock Qwen2 folder with the sentence-transformers prompts `nl2code_query`, ...;
* v3 original: `architectures` also seen as `XLMRobertaModel`; v3 -hf without an `architectures` key;
* v4 -vllm-*: stock Qwen2.5-VL config with a nested `text_config`, task LoRA merged, no adapters/,
  no projector, `preprocessor_config.json` allowing 12,845,056 pixels.

Every string here is written out by hand (not imported from jinaserve), so a changed constant in the
code cannot change the test's expectation with it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[1]


def builders(name: str, rel: str) -> ModuleType:
    """Import another test folder's builder module by path, once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / rel)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def jt() -> ModuleType:
    return builders("ck_jt_builders", "jina_text/jt_builders.py")


def rr() -> ModuleType:
    return builders("ck_rr_builders", "rerankers/rr_builders.py")


def v4() -> ModuleType:
    return builders("ck_tiny_v4", "v4/tiny_v4.py")


def v3() -> ModuleType:
    return builders("ck_v3_builders", "jina_v3/v3_builders.py")


def mm() -> ModuleType:
    """jina-clip, jina-colbert and jina-reranker-v1 in their published layouts."""
    return builders("ck_mm_builders", "more_models/mm_builders.py")


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def edit_config(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    write_json(folder / "config.json", cfg)


def model_card(folder: Path, title: str, licence: str = "cc-by-nc-4.0") -> None:
    (folder / "README.md").write_text(f"---\nlicense: {licence}\nlibrary_name: transformers\n---\n\n# {title}\n\n"
                                      f"A model card.\n")


V5_PROMPTS = {"query": "Query: ", "document": "Document: "}


def v5_base_st_files(folder: Path) -> None:
    """What the published v5 base repos add for sentence-transformers: one custom module, the prompts."""
    write_json(folder / "modules.json", [{"idx": 0, "name": "transformer", "path": "",
                                          "type": "custom_st.Transformer", "kwargs": ["task", "truncate_dim"]}])
    write_json(folder / "config_sentence_transformers.json", {"prompts": V5_PROMPTS, "default_prompt_name": "document",
                                                              "similarity_fn_name": "cosine"})


def st_pooling_files(folder: Path, prompts: dict[str, str], pooling: str = "lasttoken") -> None:
    """A plain sentence-transformers layout: Transformer → Pooling → Normalize, with prompts."""
    write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
    write_json(folder / "1_Pooling" / "config.json", {"pooling_mode_lasttoken": pooling == "lasttoken",
                                                      "pooling_mode_mean_tokens": pooling == "mean",
                                                      "include_prompt": True})
    (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(folder / "config_sentence_transformers.json", {"prompts": prompts, "default_prompt_name": None})


CODE_PROMPTS = {  # the published prompt names and texts of jina-code-embeddings (model card)
    "nl2code_query": "Find the most relevant code snippet given the following query:\n",
    "nl2code_document": "Candidate code snippet:\n",
    "qa_query": "Find the most relevant answer given the following question:\n",
    "qa_document": "Candidate answer:\n",
}


def v4_vllm(base: Path, dst: Path, task: str) -> Path:
    """The -vllm-<task> layout from a tiny v4: merged weights, nested text_config, the 12.8 MP preprocessor."""
    folder = v4().build_tiny_v4_merged(base, dst, task)
    cfg = json.loads((folder / "config.json").read_text())
    text_keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings", "rope_scaling", "rope_theta", "sliding_window",
                 "rms_norm_eps", "hidden_act", "max_window_layers", "use_sliding_window", "rope_parameters")
    cfg["text_config"] = {k: cfg.pop(k) for k in text_keys if k in cfg}
    cfg["text_config"]["model_type"] = "qwen2_5_vl_text"
    write_json(folder / "config.json", cfg)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre.update({"min_pixels": 3136, "max_pixels": 12845056})
    write_json(folder / "preprocessor_config.json", pre)
    return folder


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
