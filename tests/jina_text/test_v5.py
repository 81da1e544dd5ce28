"""jina-embeddings-v5-text (small: Qwen3, nano: EuroBERT) against hand-computed references.

Tolerance: fp32 model vs float64-normalised reference, max abs difference 2e-5 per coordinate.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from refs import backbone, embed, last_token_vector, merge_lora_by_hand, raw_tokenize, service, unit

from jinaserve.errors import ValidationFailedError
from jinaserve.jobs import EmbedInput, EmbedOptions

ATOL = 2e-5
TEXTS = ["Berlin is the capital of Germany.", "hello", "the quick brown fox jumps over the lazy dog again"]
# API task -> (adapter folder, prefix), as the hosted API documents them (research §6.1)
V5_TASKS = {
    "retrieval.query": ("retrieval", "Query: "),
    "retrieval.passage": ("retrieval", "Document: "),
    "text-matching": ("text-matching", "Document: "),
    "classification": ("classification", "Document: "),
    "clustering": ("clustering", "Document: "),
}
MODELS = {"small": ("jina-embeddings-v5-text-small", "qwen3"), "nano": ("jina-embeddings-v5-text-nano", "eurobert")}


@pytest.fixture(scope="module", params=[("small", "merged"), ("small", "lora"), ("nano", "merged"), ("nano", "lora")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def loaded(request, v5_small_dir, v5_nano_dir):
    size, mode = request.param
    folder = v5_small_dir if size == "small" else v5_nano_dir
    model_id, kind = MODELS[size]
    with service(model_id, folder, adapter_mode=mode) as svc:
        yield size, folder, kind, svc


def test_each_task_uses_its_adapter_and_prefix(loaded):
    size, folder, kind, svc = loaded
    got = {task: embed(svc, TEXTS, task=task) for task in V5_TASKS}
    for task, (adapter, prefix) in V5_TASKS.items():
        model = merge_lora_by_hand(backbone(folder, kind), folder / "adapters" / adapter)
        ref = np.stack([last_token_vector(model, raw_tokenize(folder, prefix + t)) for t in TEXTS])
        np.testing.assert_allclose(got[task], ref, atol=ATOL, err_msg=f"{size} {task}")
    # the four adapters (and the two retrieval prefixes) give four/five different vectors
    names = list(V5_TASKS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(got[a] - got[b]).max() > 1e-2, (a, b)
    # no task = text-matching (hosted default)
    np.testing.assert_allclose(embed(svc, TEXTS), got["text-matching"], atol=1e-6)


def test_prefix_and_special_tokens_match_the_tokenized_text(loaded):
    size, folder, _, svc = loaded
    for task, (_, prefix) in V5_TASKS.items():
        plan = svc.family.plan_embed([EmbedInput(text=t) for t in TEXTS], EmbedOptions(task=task))
        assert [item.payload.ids for item in plan.items] == [raw_tokenize(folder, prefix + t) for t in TEXTS]
    ids = raw_tokenize(folder, "Query: x")
    eos = svc.family.tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    # the published -nano tokenizer appends its end-of-text token, the -small one appends nothing
    assert (ids[-1] == eos) == (size == "nano")


def test_matryoshka_truncation_then_normalisation(loaded):
    _, _, _, svc = loaded
    raw = embed(svc, TEXTS, task="retrieval.query", normalized=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    cut = embed(svc, TEXTS, task="retrieval.query", dimensions=8)
    np.testing.assert_allclose(cut, np.stack([unit(r[:8]) for r in raw]), atol=1e-6)


def test_padding_in_a_batch_gives_each_item_its_single_vector(loaded):
    _, _, _, svc = loaded
    batch = embed(svc, TEXTS, task="clustering")
    singles = np.stack([embed(svc, [t], task="clustering")[0] for t in TEXTS])
    np.testing.assert_allclose(batch, singles, atol=ATOL)


def test_mixed_task_load_gives_each_item_its_own_task_vector(loaded):
    _, _, _, svc = loaded
    expected = {task: embed(svc, TEXTS, task=task) for task in V5_TASKS}
    # queue every task's items before any of them runs: the batcher must keep tasks apart
    plans, futures = [], []
    with svc.batcher._cond:  # hold the worker so that all items are waiting together
        for task in list(V5_TASKS) * 2:
            plan = svc._plan_embed([EmbedInput(text=t) for t in TEXTS], EmbedOptions(task=task))
            plans.append((task, plan))
            futures.append(svc.batcher.submit(plan.items))
    for (task, plan), futs in zip(plans, futures, strict=True):
        got = np.stack([np.asarray(v) for v in plan.assemble([f.result(timeout=60) for f in futs])])
        np.testing.assert_allclose(unit_rows(got), expected[task], atol=ATOL, err_msg=task)
    # and from concurrent threads through the public sync path
    results: dict[int, np.ndarray] = {}
    tasks = list(V5_TASKS) * 2

    def worker(i: int) -> None:
        results[i] = embed(svc, TEXTS, task=tasks[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, task in enumerate(tasks):
        np.testing.assert_allclose(results[i], expected[task], atol=ATOL, err_msg=task)


def unit_rows(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_unknown_task_and_too_many_dimensions_are_422(loaded):
    _, _, _, svc = loaded
    with pytest.raises(ValidationFailedError) as exc:
        embed(svc, TEXTS, task="nl2code.query")
    assert exc.value.status == 422
    message = str(exc.value.errors[0].message)
    for task in V5_TASKS:
        assert task in message
    with pytest.raises(ValidationFailedError) as exc:
        embed(svc, TEXTS, dimensions=svc.spec.dims + 1)
    assert exc.value.errors[0].type == "less_than_equal"


def test_per_task_merged_repo(v5_small_dir: Path, tmp_path: Path):
    """A `...-retrieval` repo (retrieval LoRA merged into the weights, no adapters/) serves the same
    vectors as the base repo's retrieval adapter, and only the retrieval tasks."""
    merged = tmp_path / "jina-embeddings-v5-text-small-retrieval"
    merged.mkdir()
    model = merge_lora_by_hand(backbone(v5_small_dir, "qwen3"), v5_small_dir / "adapters" / "retrieval")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(merged / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(v5_small_dir / name, merged / name)
    cfg = json.loads((merged / "config.json").read_text())
    cfg.update({"model_type": "qwen3", "architectures": ["Qwen3Model"]})
    cfg.pop("auto_map")
    (merged / "config.json").write_text(json.dumps(cfg))
    with service("jina-embeddings-v5-text-small", v5_small_dir) as base, \
            service("jina-embeddings-v5-text-small-retrieval", merged) as per_task:
        assert per_task.family.adapters is None
        for task in ("retrieval.query", "retrieval.passage"):
            np.testing.assert_allclose(embed(per_task, TEXTS, task=task), embed(base, TEXTS, task=task), atol=ATOL)
        # its default is the document side (the sentence-transformers default prompt "document")
        np.testing.assert_allclose(embed(per_task, TEXTS), embed(base, TEXTS, task="retrieval.passage"), atol=ATOL)
        with pytest.raises(ValidationFailedError):
            embed(per_task, TEXTS, task="text-matching")


def test_adapter_modes_keep_memory_and_weights_apart(v5_small_dir: Path):
    """merged: per-task weight copies are swapped in, the base is never modified in place."""
    with service("jina-embeddings-v5-text-small", v5_small_dir, adapter_mode="merged") as svc:
        adapters = svc.family.adapters
        assert adapters.mode == "merged"
        q = adapters.modules["layers.0.self_attn.q_proj"]
        adapters.activate("retrieval")
        w_retrieval = q.weight
        adapters.activate("clustering")
        assert q.weight is not w_retrieval and not torch.equal(q.weight, w_retrieval)
        adapters.activate("retrieval")
        assert q.weight.data_ptr() == w_retrieval.data_ptr()


def test_auto_mode_merges_only_when_the_copies_fit(v5_small_dir: Path, monkeypatch):
    from jinaserve.models import lora

    assert svc_mode(v5_small_dir) in ("merged", "lora")  # the catalog default (auto) loads either way
    monkeypatch.setattr(lora, "free_memory_bytes", lambda device: 10**12)
    assert svc_mode(v5_small_dir) == "merged"
    monkeypatch.setattr(lora, "free_memory_bytes", lambda device: 1000)  # the copies would not fit
    assert svc_mode(v5_small_dir) == "lora"


def svc_mode(folder: Path) -> str:
    with service("jina-embeddings-v5-text-small", folder) as svc:
        assert svc.spec.extra["adapter_mode"] == "auto"
        return svc.family.adapters.mode


def test_base_weights_under_a_model_prefix_load_the_same(v5_small_dir: Path, tmp_path: Path):
    """Published checkpoints may store the backbone under `model.` (vLLM's loader strips it); both load."""
    from safetensors.torch import load_file, save_file

    prefixed = tmp_path / "prefixed"
    shutil.copytree(v5_small_dir, prefixed)
    sd = load_file(str(prefixed / "model.safetensors"))
    save_file({f"model.{k}": v for k, v in sd.items()}, str(prefixed / "model.safetensors"))
    with service("jina-embeddings-v5-text-small", v5_small_dir) as a, \
            service("jina-embeddings-v5-text-small", prefixed) as b:
        np.testing.assert_allclose(embed(b, TEXTS, task="classification"), embed(a, TEXTS, task="classification"),
                                   atol=1e-6)


def test_weights_that_do_not_fit_the_backbone_are_refused(v5_small_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(v5_small_dir, broken)
    sd = load_file(str(broken / "model.safetensors"))
    sd.pop("layers.1.mlp.down_proj.weight")
    save_file(sd, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match="down_proj"), service("jina-embeddings-v5-text-small", broken):
        pass
