"""Fixtures for the llama.cpp runtime: torch checkpoints converted to GGUF with llama.cpp's own converter.

Skipped only when llama-cpp-python is not importable (CI installs it through `.[dev]`). The converter
comes from the installed llama-cpp-python's sdist (`jinaserve.runtimes.gguf_convert`); all conversions
run in one subprocess, once per session.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'jinaserve[gguf]')")

from helpers import minilm_dir
from jinaserve.runtimes.gguf_convert import ConvertJob, convert

TESTS = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "added_tokens.json", "chat_template.jinja")


def _module(name: str, path: Path) -> ModuleType:
    """Import another test folder's builder module by path (the same tiny checkpoints as its own tests)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def _with_tokenizer(src: Path, dst: Path, extra: tuple[str, ...] = ()) -> None:
    """GGUF folder = the GGUF file(s) + the checkpoint's tokenizer files (+ extra files such as the projector)."""
    for name in (*TOKENIZER_FILES, *extra):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)


def _nano_for_converter(src: Path, dst: Path) -> None:
    """transformers' EuroBertConfig writes `classifier_pooling: "late"` (a sequence-classification head
    setting the converter rejects); the embedding model has no such head, so the key is dropped."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "config.json":
            shutil.copy(f, dst / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg.pop("classifier_pooling", None)
    (dst / "config.json").write_text(json.dumps(cfg))


def _reranker_for_converter(src: Path, dst: Path) -> None:
    """jina-reranker-v3 as llama.cpp converts it (what the published GGUF holds): the Qwen3 backbone alone
    (`Qwen3ForCausalLM`, no projector tensors); the projector goes to projector.safetensors."""
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    state = load_file(str(src / "model.safetensors"))
    projector = {k: v for k, v in state.items() if k.startswith("projector.")}
    backbone = {k: v for k, v in state.items() if not k.startswith("projector.")}
    save_file(backbone, str(dst / "model.safetensors"), metadata={"format": "pt"})
    save_file(projector, str(dst / "projector.safetensors"))
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    cfg.pop("auto_map", None)
    (dst / "config.json").write_text(json.dumps(cfg))
    _with_tokenizer(src, dst)


@pytest.fixture(scope="session")
def gguf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{name: path}: torch folders (`*_torch`) and their GGUF counterparts."""
    root = tmp_path_factory.mktemp("gguf")
    jt = _module("gguf_jt_builders", TESTS / "jina_text" / "jt_builders.py")
    v3 = _module("gguf_v3_builders", TESTS / "jina_v3" / "v3_builders.py")
    rr = _module("gguf_rr_builders", TESTS / "rerankers" / "rr_builders.py")

    paths: dict[str, Path] = {"minilm_torch": minilm_dir()}
    paths["nano_torch"] = jt.build_v5_nano(root / "v5-nano-torch")
    paths["code_torch"] = jt.build_code(root / "code-torch")
    paths["reranker_torch"] = rr.build_tiny_v3(root / "reranker-torch", hidden=64)
    reranker_src = root / "reranker-convert"
    _reranker_for_converter(paths["reranker_torch"], reranker_src)

    minilm = root / "minilm"  # the GGUF alone: tokenised by its own vocabulary
    minilm.mkdir()
    jobs = [ConvertJob(paths["minilm_torch"], minilm / "all-MiniLM-L6-v2-F16.gguf", "f16"),
            ConvertJob(paths["minilm_torch"], minilm / "all-MiniLM-L6-v2-Q8_0.gguf", "q8_0")]
    nano_src = root / "v5-nano-convert"
    _nano_for_converter(paths["nano_torch"], nano_src)
    toy = {"nano": nano_src, "code": paths["code_torch"], "reranker": reranker_src}
    for name, src in toy.items():
        folder = root / name
        folder.mkdir()
        # toy BPE tokenizers are unknown to llama.cpp's pre-tokenizer table: the folders carry tokenizer.json
        jobs += [ConvertJob(src, folder / f"{name}-{q.upper()}.gguf", q, generic_pretokenizer=True)
                 for q in (("f16", "q8_0") if name == "nano" else ("f16",))]
    # jina-embeddings-v3: the remote-code layout (what llama.cpp's converter reads: stacked task LoRAs,
    # `lora_adaptations`, `task_instructions`) → base GGUF + one `lora-<task>-` adapter GGUF per task
    tiny_v3 = v3.build_hf_checkpoint(root / "v3-torch")
    paths["v3_torch"] = tiny_v3.folder
    v3_src = v3.build_remote_checkpoint(tiny_v3, root / "v3-convert")
    cfg = json.loads((v3_src / "config.json").read_text())
    cfg["architectures"] = ["XLMRobertaModel"]  # as in jinaai/jina-embeddings-v3's config.json
    (v3_src / "config.json").write_text(json.dumps(cfg))
    toy["v3"] = v3_src
    (root / "v3").mkdir()
    jobs.append(ConvertJob(v3_src, root / "v3" / "v3-F16.gguf", "f16", generic_pretokenizer=True))
    convert(jobs)
    for name, src in toy.items():
        _with_tokenizer(src, root / name, ("projector.safetensors",))
    paths.update({"minilm": minilm, **{name: root / name for name in toy}})
    return paths
