"""Issue 12 item 2: an adapter that does not fit the model fails the load and names what does not fit.

Before, v4 skipped adapter modules it could not map (a DEBUG line) and the v5 loader ignored tensors that
were not LoRA factors: the vectors were silently computed without part of the task adapter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import ck_layouts as L
import pytest
import torch
from safetensors.torch import load_file, save_file

from jinaserve.catalog import lookup
from jinaserve.errors import ModelLoadError
from jinaserve.models import family_class
from jinaserve.models.loading import LoadOptions

OPTS = LoadOptions(device="cpu", threads=1)


def load(row_id: str, folder: Path, **extra: object):
    spec = lookup(row_id)
    assert spec is not None
    if extra:
        spec = replace(spec, extra={**spec.extra, **extra})
    return family_class(spec.family).load(spec, folder, OPTS)


def add_tensors(file: Path, tensors: dict[str, torch.Tensor]) -> None:
    state = load_file(str(file))
    state.update(tensors)
    save_file(state, str(file))


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory) -> Path:
    return L.v4().build_tiny_v4(tmp_path_factory.mktemp("ck-strict") / "v4")


@pytest.fixture(scope="module")
def v5_dir(tmp_path_factory) -> Path:
    return L.jt().build_v5_small(tmp_path_factory.mktemp("ck-strict5") / "v5")


def test_v4_adapter_module_that_maps_to_nothing_fails_the_load(v4_dir, tmp_path):
    bad = L.copy(v4_dir, tmp_path / "v4")
    name = "base_model.model.model.layers.0.self_attn.qq_proj"  # no such module in Qwen2.5-VL
    add_tensors(bad / "adapters" / "adapter_model.safetensors",
                {f"{name}.lora_A.retrieval.weight": torch.zeros(4, 64), f"{name}.lora_B.retrieval.weight":
                 torch.zeros(64, 4)})
    with pytest.raises(ModelLoadError, match=r"map to no module.*self_attn\.qq_proj"):
        load("jina-embeddings-v4", bad)


def test_v4_adapter_tensor_that_is_no_lora_factor_fails_the_load(v4_dir, tmp_path):
    bad = L.copy(v4_dir, tmp_path / "v4")
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.retrieval.weight"  # DoRA
    add_tensors(bad / "adapters" / "adapter_model.safetensors", {key: torch.ones(64)})
    with pytest.raises(ModelLoadError, match="lora_magnitude_vector"):
        load("jina-embeddings-v4", bad)


def test_v4_task_missing_from_the_adapter_fails_the_load(v4_dir, tmp_path):
    bad = L.copy(v4_dir, tmp_path / "v4")
    f = bad / "adapters" / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(f)).items() if ".code." not in k}, str(f))
    with pytest.raises(ModelLoadError, match=r"no LoRA weights for task\(s\) \['code'\]"):
        load("jina-embeddings-v4", bad)


@pytest.mark.parametrize("mode", ["merged", "lora"])
def test_v5_adapter_module_that_maps_to_nothing_fails_the_load(v5_dir, tmp_path, mode):
    bad = L.copy(v5_dir, tmp_path / "v5")
    name = "base_model.model.layers.0.self_attn.qkv_fused"
    add_tensors(bad / "adapters" / "clustering" / "adapter_model.safetensors",
                {f"{name}.lora_A.weight": torch.zeros(4, 32), f"{name}.lora_B.weight": torch.zeros(32, 4)})
    with pytest.raises(ModelLoadError, match=r"'clustering' adapter targets 1 modules.*qkv_fused"):
        load("jina-embeddings-v5-text-small", bad, adapter_mode=mode)


def test_v5_adapter_tensor_that_is_no_lora_factor_fails_the_load(v5_dir, tmp_path):
    bad = L.copy(v5_dir, tmp_path / "v5")
    add_tensors(bad / "adapters" / "retrieval" / "adapter_model.safetensors",
                {"base_model.model.layers.0.mlp.up_proj.lora_embedding_A": torch.zeros(4, 32)})
    with pytest.raises(ModelLoadError, match="lora_embedding_A"):
        load("jina-embeddings-v5-text-small", bad)


def test_v5_missing_task_adapter_folder_fails_and_lists_what_is_there(v5_dir, tmp_path):
    bad = L.copy(v5_dir, tmp_path / "v5")
    shutil.rmtree(bad / "adapters" / "classification")
    with pytest.raises(ModelLoadError, match=r"task 'classification' is missing.*clustering.*retrieval"):
        load("jina-embeddings-v5-text-small", bad)


def test_v3_missing_task_adapter_folder_fails(tmp_path):
    hf = L.v3().build_hf_checkpoint(tmp_path / "v3")
    shutil.rmtree(hf.folder / "separation")
    with pytest.raises(ModelLoadError, match="separation"):
        load("jina-embeddings-v3", hf.folder)


def test_intact_adapters_still_load(v5_dir):
    fam = load("jina-embeddings-v5-text-small", v5_dir, adapter_mode="lora")
    assert fam.adapters is not None and fam.adapters.mode == "lora"
    assert json.loads((v5_dir / "adapters" / "retrieval" / "adapter_config.json").read_text())["r"] == 4
