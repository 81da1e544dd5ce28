"""Each new model against an independent reference on its tiny published-layout checkpoint.

Tolerances (fp32 model vs float64 / transformers references): cosine ≥ 0.9999 per vector (per token vector for
ColBERT), relevance scores ±1e-4, same order. Every service is loaded from a neutrally named folder, exactly as
`--models /path` resolves it.
"""

from __future__ import annotations

import copy
import string

import numpy as np
import pytest
import torch
from mm_builders import CLIP_V2_PREFIX, TEXT_H, VIS, load_service
from mm_refs import clip_preprocess, eva_image_vector, unit
from PIL import Image
from safetensors.torch import load_file

from jinabert_ref import jinabert_hidden
from jinaserve.jobs import EmbedInput, EmbedOptions, RerankDocument, RerankJob

COS = 0.9999
TEXTS = ["A man is eating food.", "hello", "The new movie is awesome and very long indeed, really long"]


def strip(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def embed(svc, inputs: list[EmbedInput], **opts) -> list[np.ndarray]:
    return svc.embed_sync(inputs, EmbedOptions(in_process=True, **opts)).vectors


def assert_cos(got, ref, floor=COS):
    cos = np.sum(unit(got) * unit(ref), axis=-1)
    assert np.all(cos >= floor), cos


def images() -> list:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((32, 32), (40, 57),
                                                                                          (70, 45))]


def png_base64(img) -> str:
    import base64
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------------------------ jina-clip
def test_clip_preprocessing_matches_the_published_steps(services):
    from jinaserve.models.clip_image import clip_pixels

    cfg = services["clip_v2"].family.image_config
    for img in images():
        np.testing.assert_allclose(clip_pixels(img, cfg), clip_preprocess(img, VIS["image_size"]), atol=1e-5)


@pytest.mark.parametrize("name", ["clip_v1", "clip_v2"])
def test_clip_images_match_the_eva02_reference(name, services, clip_v1, clip_v2):
    built = clip_v1 if name == "clip_v1" else clip_v2
    vis = strip(built.tensors, "vision_model.")
    imgs = images()
    ref = np.stack([eva_image_vector(vis, built.extra["vision_config"], clip_preprocess(i, VIS["image_size"]))
                    for i in imgs])
    got = np.stack(embed(services[name], [EmbedInput(image=i) for i in imgs]))
    assert_cos(got, ref)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_clip_v1_text_matches_handwritten_jinabert(services, clip_v1):
    svc = services["clip_v1"]
    text = strip(clip_v1.tensors, "text_model.transformer.")
    tok = svc.family.tokenizer
    ref = [jinabert_hidden(text, tok(t)["input_ids"], heads=TEXT_H // 64).mean(0).numpy() for t in TEXTS]
    assert_cos(np.stack(embed(svc, [EmbedInput(text=t) for t in TEXTS])), np.stack(ref))
    # no tasks and no `dimensions` in the hosted v1 schema: both ignored
    np.testing.assert_allclose(embed(svc, [EmbedInput(text=TEXTS[0])], task="retrieval.query", dimensions=8)[0],
                               embed(svc, [EmbedInput(text=TEXTS[0])])[0], atol=1e-6)


def _clip_v2_reference_model(built):
    """transformers' JinaEmbeddingsV3Model with the one published LoRA merged by explicit math (α/r = 4/4)."""
    model = copy.deepcopy(built.native).double()
    lora, s = built.extra["lora"], built.extra["lora_scale"]
    with torch.no_grad():
        for emb in ("word_embeddings", "token_type_embeddings"):
            a, b = lora[emb]
            getattr(model.embeddings, emb).weight += (a @ b).double() * s
        for i, blk in enumerate(model.layers):
            a, b = lora[f"{i}.Wqkv"]
            delta = (b @ a).double() * s
            blk.self_attn.q_proj.weight += delta[:TEXT_H]
            blk.self_attn.k_proj.weight += delta[TEXT_H:2 * TEXT_H]
            blk.self_attn.v_proj.weight += delta[2 * TEXT_H:]
            for key, lin in (("mixer.out_proj", blk.self_attn.o_proj), ("mlp.fc1", blk.mlp.fc1),
                             ("mlp.fc2", blk.mlp.fc2)):
                a, b = lora[f"{i}.{key}"]
                lin.weight += (b @ a).double() * s
    return model


def test_clip_v2_text_matches_transformers_with_merged_lora(services, clip_v2):
    svc = services["clip_v2"]
    model = _clip_v2_reference_model(clip_v2)
    tok = svc.family.tokenizer

    def ref(text: str) -> np.ndarray:
        with torch.no_grad():
            return model(input_ids=torch.tensor([tok(text)["input_ids"]])).last_hidden_state[0].mean(0).numpy()

    docs = embed(svc, [EmbedInput(text=t) for t in TEXTS])
    assert_cos(np.stack(docs), np.stack([ref(t) for t in TEXTS]))
    queries = embed(svc, [EmbedInput(text=t) for t in TEXTS], task="retrieval.query")
    assert_cos(np.stack(queries), np.stack([ref(CLIP_V2_PREFIX + t) for t in TEXTS]))
    # Matryoshka: cut, then normalised again
    cut = embed(svc, [EmbedInput(text=TEXTS[0])], dimensions=64)[0]
    assert cut.shape == (64,)
    assert_cos(cut, ref(TEXTS[0])[:64])


def test_clip_v2_mixed_batch_and_rerank_text_and_image(services):
    svc = services["clip_v2"]
    imgs = images()
    mixed = embed(svc, [EmbedInput(text=TEXTS[0]), EmbedInput(image=imgs[0]), EmbedInput(text=TEXTS[1])])
    alone = embed(svc, [EmbedInput(text=TEXTS[0]), EmbedInput(text=TEXTS[1])]) + embed(svc, [EmbedInput(image=imgs[0])])
    for a, b in zip(mixed, [alone[0], alone[2], alone[1]], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    q = embed(svc, [EmbedInput(text="a query")], task="retrieval.query")[0]
    docs = [RerankDocument(text=TEXTS[0]), RerankDocument(image=png_base64(imgs[1]))]
    d = embed(svc, [EmbedInput(text=TEXTS[0]), EmbedInput(image=imgs[1])])
    result = svc.rerank_sync(RerankJob("m", "a query", docs))
    np.testing.assert_allclose(result.scores, [float(q @ d[0]), float(q @ d[1])], atol=1e-4)


def test_clip_v1_flash_text_names_load_the_same_weights(clip_v1, tmp_path):
    """A text tower saved with flash-attention names (fused Wqkv, emb_ln, layers.N.mixer, norm1) equals the
    jina-bert-implementation names."""
    import shutil

    from safetensors.torch import save_file

    from jinaserve.models.jinabert import JinaBertModel

    folder = tmp_path / "flash"
    shutil.copytree(clip_v1.folder, folder)
    sd = load_file(str(folder / "model.safetensors"))
    out = {}
    for k, v in sd.items():
        k = k.replace("text_model.transformer.embeddings.LayerNorm", "text_model.transformer.emb_ln")
        k = k.replace("encoder.layer.", "encoder.layers.").replace("attention.output.LayerNorm", "norm1")
        k = k.replace("attention.output.dense", "mixer.out_proj")
        out[k] = v
    for i in range(2):
        p = f"text_model.transformer.encoder.layers.{i}.attention.self."
        for leaf in ("weight", "bias"):
            out[f"text_model.transformer.encoder.layers.{i}.mixer.Wqkv.{leaf}"] = torch.cat(
                [out.pop(f"{p}{m}.{leaf}") for m in ("query", "key", "value")])
    save_file(out, str(folder / "model.safetensors"))
    svc = load_service(folder)
    try:
        text = strip(clip_v1.tensors, "text_model.transformer.")
        ids = svc.family.tokenizer(TEXTS[2])["input_ids"]
        assert_cos(embed(svc, [EmbedInput(text=TEXTS[2])])[0], jinabert_hidden(text, ids, heads=2).mean(0).numpy())
        assert isinstance(svc.family.model, JinaBertModel)
    finally:
        svc.close()


# ------------------------------------------------------------------------------------------------ jina-colbert
def _colbert_ids(tok, text: str, marker: str, *, query: bool) -> tuple[list[int], list[int], list[bool]]:
    """Stanford ColBERT tokenisation written out: [CLS] marker tokens [SEP]; queries padded to 32 with [MASK]."""
    ids = tok(text)["input_ids"][:31] if query else tok(text)["input_ids"]
    if query and len(ids) == 31 and ids[-1] != tok.sep_token_id:
        ids[-1] = tok.sep_token_id
    ids = [ids[0], tok.convert_tokens_to_ids(marker), *ids[1:]]
    skip = {tok.encode(c, add_special_tokens=False)[0] for c in string.punctuation}
    if query:
        n = len(ids)
        return ids + [tok.mask_token_id] * (32 - n), [1] * n + [0] * (32 - n), [True] * 32
    return ids, [1] * len(ids), [t not in skip for t in ids]


def test_colbert_v1_matches_handwritten_colbert(services, colbert_v1):
    svc = services["colbert_v1"]
    tok = svc.family.tokenizer
    sd = strip(colbert_v1.tensors, "bert.")
    linear = colbert_v1.tensors["linear.weight"].double()

    def ref(text: str, query: bool) -> np.ndarray:
        ids, attend, keep = _colbert_ids(tok, text, "[unused0]" if query else "[unused1]", query=query)
        h = jinabert_hidden(sd, ids, heads=1, attend=attend) @ linear.T
        return unit(h.numpy()[np.array(keep)])

    docs = ["Hello, world! A doc.", "cats; dogs... and more"]
    got = embed(svc, [EmbedInput(text=t) for t in docs])  # default input_type: document
    for g, t in zip(got, docs, strict=True):
        r = ref(t, False)
        assert g.shape == r.shape and g.shape[1] == 128
        assert_cos(g, r)
    q = embed(svc, [EmbedInput(text="what is a cat?")], task="retrieval.query")[0]
    assert q.shape == (32, 128)
    assert_cos(q, ref("what is a cat?", True))
    # MaxSim rerank = Σ_q max_d ⟨q, d⟩ on the reference vectors
    result = svc.rerank_sync(RerankJob("m", "what is a cat?", [RerankDocument(text=t) for t in docs]))
    rq = ref("what is a cat?", True)
    expected = [float((rq @ ref(t, False).T).max(axis=1).sum()) for t in docs]
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    assert list(np.argsort(-result.scores)) == list(np.argsort(-np.asarray(expected)))


def test_colbert_v2_matches_transformers_colbert(services, colbert_v2):
    svc = services["colbert_v2"]
    tok = svc.family.tokenizer
    model = colbert_v2.native.double()
    linear = colbert_v2.tensors["linear.weight"].double()

    def ref(text: str, query: bool) -> np.ndarray:
        ids, _, keep = _colbert_ids(tok, text, "[QueryMarker]" if query else "[DocumentMarker]", query=query)
        with torch.no_grad():  # v2 attends to the [MASK] expansion (attention mask all ones)
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0] @ linear.T
        return unit(h.numpy()[np.array(keep)])

    doc = "Berlin is the capital of Germany; Paris is the capital of France."
    assert_cos(embed(svc, [EmbedInput(text=doc)])[0], ref(doc, False))
    q = embed(svc, [EmbedInput(text="capital of France?")], task="retrieval.query")[0]
    assert q.shape == (32, 128)
    assert_cos(q, ref("capital of France?", True))
    # dimensions 64 / 96: each token vector cut and normalised again; other values refused
    for dims in (64, 96):
        cut = embed(svc, [EmbedInput(text=doc)], dimensions=dims)[0]
        assert cut.shape[1] == dims
        assert_cos(cut, ref(doc, False)[:, :dims])
    from jinaserve.errors import ValidationFailedError

    with pytest.raises(ValidationFailedError):
        embed(svc, [EmbedInput(text=doc)], dimensions=100)
    docs = [doc, "hello world", "the capital city of France is Paris"]
    result = svc.rerank_sync(RerankJob("m", "capital of France?", [RerankDocument(text=t) for t in docs]))
    rq = ref("capital of France?", True)
    expected = np.array([(rq @ ref(t, False).T).max(axis=1).sum() for t in docs])
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)


def test_colbert_long_query_is_cut_to_32(services):
    q = embed(services["colbert_v1"], [EmbedInput(text=" ".join(["word"] * 80))], task="retrieval.query")[0]
    assert q.shape == (32, 128)


# ------------------------------------------------------------------------------------------------ reranker v1
def test_reranker_v1_matches_handwritten_cross_encoder(services, reranker_v1):
    svc = services["reranker_v1"]
    tok = svc.family.tokenizer
    sd = {k: v.double() for k, v in reranker_v1.tensors.items()}
    bert = strip(sd, "bert.")
    query, docs = "what do cats eat?", ["cats eat fish and mice", "the stock market fell", "kittens drink milk"]

    def ref(doc: str) -> float:
        enc = tok(query, doc)
        h = jinabert_hidden(bert, enc["input_ids"], heads=1, types=enc["token_type_ids"])[0]
        pooled = torch.tanh(h @ sd["bert.pooler.dense.weight"].T + sd["bert.pooler.dense.bias"])
        logit = pooled @ sd["classifier.weight"][0] + sd["classifier.bias"][0]
        return float(torch.sigmoid(logit))

    expected = np.array([ref(d) for d in docs])
    result = svc.rerank_sync(RerankJob("m", query, [RerankDocument(text=d) for d in docs]))
    np.testing.assert_allclose(result.scores, expected, atol=1e-4)
    assert list(np.argsort(-result.scores)) == list(np.argsort(-expected))
    assert np.all((result.scores > 0) & (result.scores < 1))
