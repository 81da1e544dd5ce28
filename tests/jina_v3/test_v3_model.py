"""jina-embeddings-v3 family: adapters, prefixes, pooling, Matryoshka, layouts (tiny random checkpoints)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from v3_builders import FOLDER, PREFIXES, TASK_ORDER
from v3_reference import reference_embedding

from jinaserve.catalog import lookup
from jinaserve.engine.service import ModelService
from jinaserve.errors import ModelLoadError, ValidationFailedError
from jinaserve.jobs import EmbedInput, EmbedOptions
from jinaserve.models.jina_v3 import JinaV3Family
from jinaserve.models.jina_v3_layout import map_module
from jinaserve.models.loading import LoadOptions

SPEC = lookup("jina-embeddings-v3")
TEXTS = ["Organic skincare for sensitive skin", "Berlin is the capital of Germany.", "hello"]
ATOL = 2e-5  # fp32, same math in a different order


def load(folder, mode: str = "merged") -> JinaV3Family:
    import os

    old = os.environ.get("JINASERVE_V3_ADAPTERS")
    os.environ["JINASERVE_V3_ADAPTERS"] = mode
    try:
        return JinaV3Family.load(SPEC, folder, LoadOptions(device="cpu", dtype="float32", offline=True, threads=1))
    finally:
        if old is None:
            os.environ.pop("JINASERVE_V3_ADAPTERS", None)
        else:
            os.environ["JINASERVE_V3_ADAPTERS"] = old


@pytest.fixture(scope="module")
def fam(v3_hf) -> JinaV3Family:
    return load(v3_hf.folder)


@pytest.fixture(scope="module")
def fam_runtime(v3_hf) -> JinaV3Family:
    return load(v3_hf.folder, "runtime")


def embed(family: JinaV3Family, texts, **opts) -> np.ndarray:
    plan = family.plan_embed([EmbedInput(text=t) for t in texts], EmbedOptions(**opts))
    return np.stack(plan.assemble(family.run_batch([i.payload for i in plan.items])))


def test_catalog_row():
    assert SPEC.family == "jina_v3" and SPEC.default_task is None and SPEC.pooling == "mean"
    assert SPEC.task_names == TASK_ORDER
    assert SPEC.dims == 1024 and SPEC.max_tokens == 8192 and SPEC.licence == "CC-BY-NC-4.0"
    assert "late_chunking" in SPEC.options and SPEC.matryoshka_dims[-1] == 1024
    assert {t.name: t.prefix for t in SPEC.tasks if t.prefix} == PREFIXES
    assert {t.name: t.adapter for t in SPEC.tasks} == FOLDER
    assert lookup("jinaai/jina-embeddings-v3") is SPEC and lookup("jinaai/jina-embeddings-v3-hf") is SPEC


@pytest.mark.parametrize("task", [None, *TASK_ORDER])
def test_each_task_equals_explicit_lora_math(v3_hf, fam, fam_runtime, task):
    """Per task: W + B·A·α/r applied by hand to a plain model, on prefix + text, mean-pooled."""
    prefix = PREFIXES.get(task, "") if task else ""
    ref = np.stack([reference_embedding(v3_hf, task, t, prefix) for t in TEXTS])
    for family in (fam, fam_runtime):
        got = embed(family, TEXTS, task=task)
        np.testing.assert_allclose(got, ref, atol=ATOL, rtol=1e-4)


def test_tasks_give_different_vectors(fam):
    vecs = {task: embed(fam, ["text-matching"], task=task)[0] for task in [None, *TASK_ORDER]}
    names = list(vecs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.allclose(vecs[a], vecs[b], atol=1e-3), (a, b)


def test_prefixes_are_applied(fam):
    tok = fam.tokenizer
    for task in [None, *TASK_ORDER]:
        ids = fam.tokenize_inputs([EmbedInput(text=TEXTS[0])], task, truncate=False)[0]
        prefix = PREFIXES.get(task, "") if task else ""
        assert ids == tok(prefix + TEXTS[0])["input_ids"], task
    assert len(fam.tokenize_inputs([EmbedInput(text="x")], "retrieval.query", False)[0]) > \
        len(fam.tokenize_inputs([EmbedInput(text="x")], "text-matching", False)[0])


def test_mean_pooling_ignores_padding(fam):
    batch = embed(fam, TEXTS, task="retrieval.passage")  # different lengths → padded batch
    for i, t in enumerate(TEXTS):
        np.testing.assert_allclose(batch[i], embed(fam, [t], task="retrieval.passage")[0], atol=ATOL)


def test_remote_layout_gives_same_vectors(v3_remote, fam):
    remote = load(v3_remote)
    for task in [None, *TASK_ORDER]:
        np.testing.assert_allclose(embed(remote, TEXTS, task=task), embed(fam, TEXTS, task=task), atol=ATOL)


def test_peft_library_agrees_with_adapter_reader(v3_hf, fam):
    """The adapter folders are valid PEFT folders and PEFT's own forward gives the family's hidden states."""
    from peft import PeftModel
    from transformers import JinaEmbeddingsV3Model

    base = JinaEmbeddingsV3Model.from_pretrained(str(v3_hf.folder)).eval()
    peft_model = PeftModel.from_pretrained(base, str(v3_hf.folder / "retrieval_query")).eval()
    ids = torch.tensor([fam.tokenizer("Organic skincare for sensitive skin")["input_ids"]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = fam.forward_hidden(ids, mask, "retrieval_query")
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)


def test_key_mapping():
    assert map_module("roberta.emb_ln") == [("embeddings.LayerNorm", None)]
    assert map_module("roberta.encoder.layers.7.mixer.Wqkv") == [
        ("layers.7.self_attn.q_proj", 0), ("layers.7.self_attn.k_proj", 1), ("layers.7.self_attn.v_proj", 2)]
    assert map_module("encoder.layers.0.mixer.out_proj") == [("layers.0.self_attn.o_proj", None)]
    assert map_module("roberta.encoder.layers.3.norm2") == [("layers.3.post_mlp_layernorm", None)]
    assert map_module("base_model.model.layers.1.mlp.fc1") == [("layers.1.mlp.fc1", None)]
    assert map_module("roberta.embeddings.word_embeddings") == [("embeddings.word_embeddings", None)]


def test_missing_adapter_is_a_load_error(v3_hf, tmp_path):
    broken = tmp_path / "v3"
    shutil.copytree(v3_hf.folder, broken)
    shutil.rmtree(broken / "separation")
    with pytest.raises(ModelLoadError, match="separation"):
        load(broken)


def test_unknown_layout_is_a_load_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not a jina-embeddings-v3"):
        load(tmp_path)


def test_validation_unknown_task_and_dimensions(fam):
    with pytest.raises(ValidationFailedError) as e:
        fam.check_embed_options(EmbedOptions(task="code.query"))
    assert all(t in e.value.message for t in TASK_ORDER)
    with pytest.raises(ValidationFailedError, match="less than or equal to"):
        fam.check_embed_options(EmbedOptions(dimensions=fam.spec.dims + 1))
    fam.check_embed_options(EmbedOptions(task="separation", dimensions=fam.spec.dims, late_chunking=True))


def test_matryoshka_truncates_then_normalises(fam):
    service = ModelService("v3", fam)
    try:
        raw = service.embed_sync([EmbedInput(text=TEXTS[0])], EmbedOptions(task="classification",
                                                                          normalized=False)).vectors[0]
        cut = service.embed_sync([EmbedInput(text=TEXTS[0])], EmbedOptions(task="classification",
                                                                          dimensions=8)).vectors[0]
    finally:
        service.close()
    assert raw.shape == (32,) and cut.shape == (8,)
    np.testing.assert_allclose(cut, raw[:8] / np.linalg.norm(raw[:8]), atol=1e-6)


def test_mixed_task_batches_equal_single_requests(fam):
    """Items of five tasks (and no task) queued together: each gets its own task's vector."""
    service = ModelService("v3", fam, max_batch_tokens=4096)
    tasks = [None, *TASK_ORDER]
    try:
        single = {t: embed(fam, TEXTS, task=t) for t in tasks}
        plans = [fam.plan_embed([EmbedInput(text=x) for x in TEXTS], EmbedOptions(task=t)) for t in tasks]
        items = [it for p in plans for it in p.items]
        futures = service.batcher.submit(items)  # one submit: the queue holds all groups at once
        outs = [f.result(timeout=60) for f in futures]

        async def concurrent():
            return await asyncio.gather(*[service.embed([EmbedInput(text=x) for x in TEXTS],
                                                        EmbedOptions(task=t, normalized=False)) for t in tasks])

        via_service = asyncio.run(concurrent())
    finally:
        service.close()
    pos = 0
    for t, plan, res in zip(tasks, plans, via_service, strict=True):
        got = np.stack(plan.assemble(outs[pos:pos + len(plan.items)]))
        pos += len(plan.items)
        np.testing.assert_allclose(got, single[t], atol=ATOL)
        np.testing.assert_allclose(np.stack(res.vectors), single[t], atol=ATOL)


def test_max_tokens_follow_the_checkpoint(fam):
    assert fam.spec.max_tokens == 128 and fam.spec.dims == 32
    assert replace(SPEC).max_tokens == 8192  # the catalog row itself is untouched


def test_merged_mode_merges_only_tasks_in_use(v3_hf):
    from jinaserve.models.jina_v3 import TaskLinear

    family = load(v3_hf.folder)
    linears = [m for m in family.model.modules() if isinstance(m, TaskLinear)]
    assert len(linears) == 2 * 6 and all(not m.merged for m in linears)  # q, k, v, o, fc1, fc2 per layer
    embed(family, ["x"], task="retrieval.query")
    assert all(set(m.merged) == {"retrieval_query"} for m in linears)
    family.prepare_task("separation")
    assert all(set(m.merged) == {"retrieval_query", "separation"} for m in linears)
    runtime = load(v3_hf.folder, "runtime")
    embed(runtime, ["x"], task="retrieval.query")
    assert all(not m.merged and len(m.factors) == 5 for m in runtime.model.modules() if isinstance(m, TaskLinear))


def test_served_by_hub_id_from_the_hf_cache(v3_hf, tmp_path):
    """`jina-embeddings-v3` resolves to `jinaai/jina-embeddings-v3-hf` and loads from the HF cache layout."""
    from jinaserve.inprocess import Embedder

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--jinaai--jina-embeddings-v3-hf"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(v3_hf.folder, repo / "snapshots" / commit)
    emb = Embedder("jina-embeddings-v3", offline=True, cache_dir=str(tmp_path), device="cpu", threads=1)
    try:
        assert emb.model_id == "jina-embeddings-v3" and emb.spec.family == "jina_v3"
        got = emb.encode(TEXTS[:2], task="text-matching", dimensions=16)
    finally:
        emb.close()
    want = embed(load(v3_hf.folder), TEXTS[:2], task="text-matching")[:, :16]
    np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=ATOL)


def test_folder_with_any_name_is_detected_as_v3(v3_hf, v3_remote):
    from jinaserve.models.resolve import resolve

    for folder in (v3_hf.folder, v3_remote):  # tmp names: no catalog id, so the config's architecture decides
        ref = resolve(str(folder))
        assert ref.spec.family == "jina_v3" and ref.spec.task_names == TASK_ORDER


@pytest.mark.parametrize("fused_a", [False, True])
def test_peft_adapter_on_fused_wqkv_is_split(v3_hf, tmp_path, fused_a):
    """Adapters saved under the legacy names (`encoder.layers.N.mixer.Wqkv`) load like the split ones."""
    from safetensors.torch import load_file, save_file

    from jinaserve.models.jina_v3_layout import read_peft_adapter

    src = v3_hf.folder / "classification"
    state = load_file(str(src / "adapter_model.safetensors"))
    fused: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".self_attn.q_proj." in key:
            layer = key.split(".layers.")[1].split(".")[0]
            parts = [state[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            new = f"base_model.model.encoder.layers.{layer}.mixer.Wqkv.{key.rsplit('.', 2)[-2]}.weight"
            fused[new] = torch.cat(parts) if (fused_a or "lora_B" in key) else parts[0]
        elif "_proj." not in key or ".o_proj." in key:
            fused[key] = value
    dst = tmp_path / "classification"
    dst.mkdir()
    save_file(fused, str(dst / "adapter_model.safetensors"))
    shutil.copy(src / "adapter_config.json", dst / "adapter_config.json")
    want, got = read_peft_adapter(src), read_peft_adapter(dst)
    assert set(got) == set(want)
    for path, w in want.items():
        torch.testing.assert_close(got[path].delta(), w.delta())


def test_premerge_at_load_time(v3_hf, monkeypatch):
    """`JINASERVE_V3_PREMERGE` builds the named tasks' merged weights before any request; unknown names fail."""
    from jinaserve.models.jina_v3 import TaskLinear

    monkeypatch.setenv("JINASERVE_V3_PREMERGE", "retrieval.query, text-matching")
    family = load(v3_hf.folder)
    linears = [m for m in family.model.modules() if isinstance(m, TaskLinear)]
    assert linears and all(set(m.merged) == {"retrieval_query", "text_matching"} for m in linears)
    ref = reference_embedding(v3_hf, "text-matching", TEXTS[0])
    np.testing.assert_allclose(embed(family, [TEXTS[0]], task="text-matching")[0], ref, atol=ATOL, rtol=1e-4)
    monkeypatch.setenv("JINASERVE_V3_PREMERGE", "all")
    assert all(len(m.merged) == 5 for m in load(v3_hf.folder).model.modules() if isinstance(m, TaskLinear))
    monkeypatch.setenv("JINASERVE_V3_PREMERGE", "all")  # runtime mode keeps factors only: nothing to merge
    assert all(not m.merged for m in load(v3_hf.folder, "runtime").model.modules() if isinstance(m, TaskLinear))
    monkeypatch.setenv("JINASERVE_V3_PREMERGE", "nl2code.query")
    with pytest.raises(ModelLoadError, match=r"nl2code\.query.*retrieval\.query"):
        load(v3_hf.folder)
