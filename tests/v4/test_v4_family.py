"""The v4 family against an independent reference: LoRA merged by hand into a plain transformers
Qwen2.5-VL, inputs built by hand, pooling done by hand. Tolerances: fp32 on CPU, atol 2e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_v4 import JPEG, PNG, PNG2

from jinaserve.images import load_image
from jinaserve.jobs import EmbedInput, EmbedOptions
from jinaserve.models.jina_v4 import IMAGE_PROMPT

ATOL = 2e-5


def _legacy_to_current(module: str) -> str:
    if module.startswith("model.layers."):
        return "model.language_model." + module[len("model."):]
    return module


class Reference:
    """A fresh transformers model with one task's LoRA merged in by hand (W + alpha/r · B A)."""

    def __init__(self, path, task: str) -> None:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        cfg = Qwen2_5_VLConfig.from_dict(json.loads((path / "config.json").read_text()))
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(path), config=cfg,
                                                                         dtype=torch.float32).eval()
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.proc = Qwen2VLImageProcessorPil.from_pretrained(str(path))
        self.cfg = cfg
        state = load_file(str(path / "model.safetensors"))
        w, b = state["multi_vector_projector.weight"].clone(), state["multi_vector_projector.bias"]
        lora = load_file(str(path / "adapters" / "adapter_model.safetensors"))
        acfg = json.loads((path / "adapters" / "adapter_config.json").read_text())
        scale = acfg["lora_alpha"] / acfg["r"]
        n = 0
        with torch.no_grad():
            for key, a in lora.items():
                if f".lora_A.{task}.weight" not in key:
                    continue
                bb = lora[key.replace(".lora_A.", ".lora_B.")]
                module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
                if module == "multi_vector_projector":
                    w += scale * bb @ a
                else:
                    self.model.get_submodule(_legacy_to_current(module)).weight += scale * bb @ a
                n += 1
        assert n > 10
        self.projector = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.projector.weight.copy_(w)
            self.projector.bias.copy_(b)

    @torch.no_grad()
    def hidden(self, ids: list[int], pixels=None, grid=None) -> torch.Tensor:
        input_ids = torch.tensor([ids])
        kw = {}
        if pixels is not None:
            kw = {"pixel_values": torch.as_tensor(pixels), "image_grid_thw": torch.as_tensor(grid)}
        mm = (input_ids == self.cfg.image_token_id).int()
        out = self.model.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                               mm_token_type_ids=mm, use_cache=False, **kw)
        return out.last_hidden_state[0]

    def text(self, text: str) -> np.ndarray:
        h = self.hidden(self.tok(text, add_special_tokens=False)["input_ids"])
        return _unit(h.mean(0).numpy())

    def image_inputs(self, data: bytes):
        out = self.proc(images=[load_image(data)], return_tensors="np")
        grid = out["image_grid_thw"]
        n = int(np.prod(grid[0])) // 4
        text = IMAGE_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * n)
        return self.tok(text, add_special_tokens=False)["input_ids"], out["pixel_values"], grid

    def image(self, data: bytes) -> np.ndarray:
        ids, pixels, grid = self.image_inputs(data)
        h = self.hidden(ids, pixels, grid)
        s = ids.index(self.cfg.vision_start_token_id)
        e = ids.index(self.cfg.vision_end_token_id)
        return _unit(h[s:e + 1].mean(0).numpy())

    def multivector(self, text: str) -> np.ndarray:
        h = self.hidden(self.tok(text, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            return torch.nn.functional.normalize(self.projector(h), dim=-1).numpy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def refs(tiny_v4_path):
    return {t: Reference(tiny_v4_path, t) for t in ("retrieval", "text-matching", "code")}


@pytest.fixture(scope="module")
def family(v4_embedder):
    return v4_embedder._service.family


@pytest.mark.parametrize(("task", "prefix"), [("retrieval.query", "Query: "), ("retrieval.passage", "Passage: "),
                                              ("text-matching", "Query: "), ("code.query", "Query: "),
                                              ("code.passage", "Passage: "), (None, "Query: ")])
def test_text_prompts(family, task, prefix):
    plan = family.plan_embed([EmbedInput(text="hello world")], EmbedOptions(task=task))
    ids = plan.items[0].payload.ids
    assert family.tokenizer.decode(ids) == prefix + "hello world"
    assert plan.total_tokens == len(ids)
    assert plan.items[0].group == {"retrieval": "retrieval", "code": "code"}.get((task or "x").split(".")[0],
                                                                              "text-matching")


def test_image_prompt_and_vision_span(family):
    plan = family.plan_embed([EmbedInput(image=PNG)], EmbedOptions(task="retrieval.passage", in_process=True))
    p = plan.items[0].payload
    t, h, w = p.grid_thw
    n = t * h * w // 4
    assert p.ids.count(family.image_token_id) == n and n > 1
    assert family.tokenizer.decode(p.ids) == IMAGE_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * n)
    s, e = p.span
    assert p.ids[s] == family.vision_start_id and p.ids[e] == family.vision_end_id
    assert e - s + 1 == n + 2
    assert p.pixel_values.shape[0] == t * h * w  # one row per (unmerged) patch
    assert plan.total_tokens == len(p.ids)


@pytest.mark.parametrize(("task", "adapter"), [("retrieval.query", "retrieval"), ("text-matching", "text-matching"),
                                               ("code.passage", "code")])
def test_text_and_image_vectors_match_the_hand_merged_reference(v4_embedder, refs, task, adapter):
    prefix = "Passage: " if task.endswith("passage") else "Query: "
    got = v4_embedder.encode_text(["a cat sits on a mat", "hello"], task=task)
    want = np.stack([refs[adapter].text(prefix + "a cat sits on a mat"), refs[adapter].text(prefix + "hello")])
    np.testing.assert_allclose(got, want, atol=ATOL)
    got_img = v4_embedder.encode_image([PNG, JPEG], task=task)
    np.testing.assert_allclose(got_img, np.stack([refs[adapter].image(PNG), refs[adapter].image(JPEG)]), atol=ATOL)


def test_each_task_uses_its_own_adapter(v4_embedder):
    # retrieval.query and text-matching share the prefix "Query: ": only the LoRA differs
    a = v4_embedder.encode_text("hello", task="retrieval.query")
    b = v4_embedder.encode_text("hello", task="text-matching")
    c = v4_embedder.encode_text("hello", task="code.query")
    assert float(a @ b) < 0.999 and float(a @ c) < 0.999 and float(b @ c) < 0.999
    np.testing.assert_allclose(v4_embedder.encode_text("hello"), b, atol=1e-6)  # default: text-matching


def test_multivector_shape_norms_and_projector_lora(v4_embedder, refs):
    texts = ["a cat sits on a mat", "hi"]
    got = v4_embedder.encode_multivector(texts, task="retrieval.query")
    for text, m in zip(texts, got, strict=True):
        want = refs["retrieval"].multivector("Query: " + text)
        assert m.shape == want.shape and m.shape[1] == 128
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(m, want, atol=ATOL)
    img = v4_embedder.encode_multivector(task="retrieval.passage", images=[PNG])[0]
    ids, _, _ = refs["retrieval"].image_inputs(PNG)
    assert img.shape == (len(ids), 128)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)


def test_dimensions_truncate_then_normalise(v4_embedder):
    full = v4_embedder.encode_text(["some text", "other"], task="retrieval.passage", normalized=False)
    for d in (1, 7, 16, 64):
        cut = v4_embedder.encode_text(["some text", "other"], task="retrieval.passage", dimensions=d)
        assert cut.shape == (2, d)
        np.testing.assert_allclose(cut, _unit(full[:, :d]), atol=1e-5)
    img_full = v4_embedder.encode_image(PNG, normalized=False)
    np.testing.assert_allclose(v4_embedder.encode_image(PNG, dimensions=8), _unit(img_full[:8]), atol=1e-5)


def test_mixed_batch_equals_single_items(v4_embedder):
    from jinaserve.jobs import EmbedInput as In

    service = v4_embedder._service
    items = [In(text="first text"), In(image=PNG), In(text="a much longer second text with more tokens in it"),
             In(image=PNG2), In(image=JPEG)]
    opts = EmbedOptions(task="retrieval.passage", in_process=True)
    batched = service.embed_sync(items, opts).vectors
    singles = [service.embed_sync([x], opts).vectors[0] for x in items]
    np.testing.assert_allclose(np.stack(batched), np.stack(singles), atol=ATOL)
    # one forward pass holding text and images of different lengths (no reliance on the batcher's packing)
    plan = service.family.plan_embed(items, opts)
    together = service.family.run_batch([it.payload for it in plan.items])
    for i, x in enumerate(items):
        alone = service.family.run_batch([service.family.plan_embed([x], opts).items[0].payload])[0]
        np.testing.assert_allclose(together[i], alone, atol=ATOL)
    mv_opts = EmbedOptions(task="retrieval.passage", in_process=True, return_multivector=True)
    mv = service.embed_sync(items, mv_opts).vectors
    for i, x in enumerate(items):
        np.testing.assert_allclose(mv[i], service.embed_sync([x], mv_opts).vectors[0], atol=ATOL)


def test_merged_vllm_checkpoint_matches_adapter_switching(tiny_v4_merged_path, v4_embedder):
    from jinaserve import Embedder

    with Embedder(f"jina-embeddings-v4-vllm-retrieval={tiny_v4_merged_path}", device="cpu") as merged:
        assert merged.spec.task_names == ["retrieval.query", "retrieval.passage"]
        np.testing.assert_allclose(merged.encode_text(["hello", "a cat"], task="retrieval.query"),
                                   v4_embedder.encode_text(["hello", "a cat"], task="retrieval.query"), atol=1e-4)
        np.testing.assert_allclose(merged.encode_image([PNG]), v4_embedder.encode_image([PNG],
                                                                                        task="retrieval.passage"),
                                   atol=1e-4)
        from jinaserve.errors import ValidationFailedError

        with pytest.raises(ValidationFailedError, match="return_multivector"):
            merged.encode_multivector("x")
        with pytest.raises(ValidationFailedError, match="task"):
            merged.encode_text("x", task="text-matching")


def test_in_process_image_sources_and_cosine(v4_embedder, tmp_path):
    from PIL import Image

    from jinaserve import cosine_similarity

    path = tmp_path / "img.png"
    path.write_bytes(PNG)
    pil = Image.open(path)
    vecs = v4_embedder.encode_image([str(path), path, pil, PNG], task="retrieval.passage")
    np.testing.assert_allclose(vecs, np.repeat(vecs[:1], 4, axis=0), atol=1e-6)
    q = v4_embedder.encode_text("red square", task="retrieval.query")
    sims = cosine_similarity(vecs, q)
    assert sims.shape == (4,) and np.all(np.abs(sims) <= 1 + 1e-6)
    assert v4_embedder.device == "cpu"


def test_missing_adapters_or_projector_fail_loading_clearly(tiny_v4_path, tmp_path):
    import shutil

    from jinaserve import Embedder
    from jinaserve.errors import ModelLoadError

    broken = tmp_path / "no-adapters"
    shutil.copytree(tiny_v4_path, broken, ignore=shutil.ignore_patterns("adapters"))
    with pytest.raises(ModelLoadError, match=r"adapter_config\.json.*one PEFT folder 'adapters/'"):
        Embedder(f"jina-embeddings-v4={broken}", device="cpu")
    # a merged (-vllm-) checkpoint served under the full v4 row: no projector for multi-vectors
    no_proj = tmp_path / "no-projector"
    shutil.copytree(tiny_v4_path, no_proj)
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(no_proj / "model.safetensors")).items()
             if "multi_vector_projector" not in k}
    save_file(state, str(no_proj / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="multi_vector_projector"):
        Embedder(f"jina-embeddings-v4={no_proj}", device="cpu")


def test_folder_with_any_name_is_detected_as_v4(tiny_v4_path):
    """An HF snapshot folder (no catalog name) is recognised by its `JinaEmbeddingsV4Model` architecture."""
    from jinaserve.models.resolve import resolve

    ref = resolve(str(tiny_v4_path))
    assert ref.served_id == tiny_v4_path.name and ref.spec.family == "jina_v4"
    assert "return_multivector" in ref.spec.options and ref.spec.default_task == "text-matching"
