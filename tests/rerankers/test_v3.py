"""jina-reranker-v3 on tiny random-weight checkpoints in the JinaForRanking layout.

References are computed here, independently of the family: the prompt is transcribed from the
published template, hidden states come from transformers' Qwen3ForCausalLM (eager attention), the
projector is applied by hand from the safetensors tensors. Tolerances: cosine scores within 1e-5 (fp32).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from rr_builders import random_text
from safetensors import safe_open

from jinaserve.catalog import lookup
from jinaserve.errors import ValidationFailedError
from jinaserve.jobs import RerankDocument, RerankJob, RerankOptions
from jinaserve.models.jina_reranker_v3 import JinaRerankerV3Family
from jinaserve.models.loading import LoadOptions
from jinaserve.models.resolve import resolve

TOL = 1e-5
SYSTEM = ("You are a search relevance expert who can determine a ranking of the passages based on how relevant "
          "they are to the query. If the query is a question, how relevant a passage is depends on how well it "
          "answers the question. If not, try to analyze the intent of the query and assess how well each passage "
          "satisfies the intent. If an instruction is provided, you should follow the instruction when "
          "determining the ranking.")


def template(query: str, docs: list[str], instruction: str | None = None) -> str:
    """docs/reference/hosted-api.md, "jina-reranker-v3 prompt and scoring", transcribed literally."""
    s = "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
    s += "<|im_start|>user\n"
    s += (f"I will provide you with {len(docs)} passages, each indicated by a numerical identifier. "
          f"Rank the passages based on their relevance to query: {query}\n")
    if instruction:
        s += "<instruct>\n" + instruction + "\n</instruct>\n"
    s += "\n".join('<passage id="' + str(i) + '">\n' + d + "<|embed_token|>\n</passage>" for i, d in enumerate(docs))
    s += "\n<query>\n" + query + "<|rerank_token|>\n</query>"
    s += "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    return s


def load_family(path: Path, **opts) -> JinaRerankerV3Family:
    spec = resolve(f"jina-reranker-v3={path}").spec
    return JinaRerankerV3Family.load(spec, path, LoadOptions(device="cpu", dtype="float32", threads=1, **opts))


class Reference:
    """Straightforward re-computation with transformers' own Qwen3ForCausalLM and the raw projector."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.lm = Qwen3ForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
        files = [path / "projector.safetensors"] if (path / "projector.safetensors").is_file() else []
        files.append(path / "model.safetensors")
        self.w: dict[str, torch.Tensor] = {}
        for f in files:
            with safe_open(str(f), framework="pt") as sf:
                for k in ("projector.0.weight", "projector.2.weight"):
                    if k in sf.keys():  # noqa: SIM118 (safe_open is not a dict)
                        self.w[k] = sf.get_tensor(k)
        self.doc_id = self.tok.convert_tokens_to_ids("<|embed_token|>")
        self.q_id = self.tok.convert_tokens_to_ids("<|rerank_token|>")

    def project(self, h: torch.Tensor) -> np.ndarray:
        return (torch.relu(h @ self.w["projector.0.weight"].T) @ self.w["projector.2.weight"].T).numpy()

    @torch.no_grad()
    def block(self, query: str, docs: list[str], instruction: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids = torch.tensor([self.tok(template(query, docs, instruction))["input_ids"]])
        hidden = self.lm.model(input_ids=ids).last_hidden_state[0]
        q = self.project(hidden[ids[0] == self.q_id])
        d = self.project(hidden[ids[0] == self.doc_id])
        assert q.shape[0] == 1 and d.shape[0] == len(docs)
        return q[0], d


def cos(d: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (d @ q) / (np.linalg.norm(d, axis=-1) * np.linalg.norm(q))


@pytest.fixture(scope="module")
def family(tiny_v3_path: Path) -> JinaRerankerV3Family:
    return load_family(tiny_v3_path)


@pytest.fixture(scope="module")
def reference(tiny_v3_path: Path) -> Reference:
    return Reference(tiny_v3_path)


def run(family: JinaRerankerV3Family, query: str, docs: list[str], **options):
    job = RerankJob("v3", query, [RerankDocument(text=d, original=d) for d in docs], RerankOptions(**options))
    plan = family.plan_rerank(job)
    outs = [family.run_batch([item.payload])[0] for item in plan.items]
    return plan, plan.assemble(outs)


def test_prompt_matches_template_token_by_token(family, reference):
    docs = ["the cat sat on the mat", "dogs <|embed_token|>bark", "  spaces\nand lines  "]
    plan, _ = run(family, "where is the <|rerank_token|>cat?", docs, instruction="prefer <|embed_token|>short passages")
    assert len(plan.items) == 1
    ids = plan.items[0].payload.ids
    # the two marker tokens are stripped from the query, documents and instruction; the rest is the template
    expected = reference.tok(template("where is the cat?", ["the cat sat on the mat", "dogs bark",
                                                             "  spaces\nand lines  "], "prefer short passages"))
    assert ids == expected["input_ids"]
    assert ids.count(reference.doc_id) == 3 and ids.count(reference.q_id) == 1
    text = reference.tok.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a search relevance expert")
    assert '<passage id="2">\n  spaces\nand lines  <|embed_token|>\n</passage>\n<query>\n' in text
    assert text.endswith("<|rerank_token|>\n</query><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # no instruction → no <instruct> block
    plan2, _ = run(family, "q", ["a"])
    assert "<instruct>" not in reference.tok.decode(plan2.items[0].payload.ids)


def test_scores_are_cosines_of_projected_hidden_states(family, reference):
    query, docs = "the cat", ["a dog sat", "the cat sat on a mat", "music and sport", ""]
    _, result = run(family, query, docs, return_embeddings=True)
    q, d = reference.block(query, docs)
    np.testing.assert_allclose(result.scores, cos(d, q), atol=TOL)
    assert result.scores.min() >= -1 and result.scores.max() <= 1
    assert result.embeddings.shape == (4, 512)
    np.testing.assert_allclose(result.embeddings, d / np.linalg.norm(d, axis=-1, keepdims=True), atol=TOL)


def test_separate_projector_file_layout(tiny_v3_separate_projector_path):
    fam = load_family(tiny_v3_separate_projector_path)
    ref = Reference(tiny_v3_separate_projector_path)
    docs = ["green trees in spring", "old houses"]
    _, result = run(fam, "trees", docs)
    q, d = ref.block("trees", docs)
    np.testing.assert_allclose(result.scores, cos(d, q), atol=TOL)


def test_local_folder_is_detected_as_v3(tiny_v3_path):
    ref = resolve(str(tiny_v3_path))
    assert ref.spec.family == "jina_reranker_v3" and ref.spec.kind == "rerank"
    assert ref.served_id == tiny_v3_path.name
    assert lookup("jinaai/jina-reranker-v3").id == "jina-reranker-v3"


def reference_blocks(ref: Reference, query: str, docs: list[str], *, context: int, max_doc_length: int,
                     block_size: int = 125) -> tuple[np.ndarray, int]:
    """The reference rerank(): truncate, pack greedily, one pass per block, weighted query merge."""
    q_ids = ref.tok(query, truncation=True, max_length=512)["input_ids"]
    cut_docs, lengths = [], []
    for doc in docs:
        ids = ref.tok(doc, truncation=True, max_length=max_doc_length)["input_ids"]
        cut_docs.append(ref.tok.decode(ids) if len(ids) >= max_doc_length else doc)
        lengths.append(len(ids))
    blocks, block, capacity = [], [], context - 2 * len(q_ids)
    for doc, n in zip(cut_docs, lengths, strict=True):
        block.append(doc)
        capacity -= n
        if len(block) >= block_size or capacity <= max_doc_length:
            blocks.append(block)
            block, capacity = [], context - 2 * len(q_ids)
    if block:
        blocks.append(block)
    qs, ds, weights = [], [], []
    for b in blocks:
        q, d = ref.block(query, b)
        qs.append(q)
        ds.append(d)
        weights.append(((1 + cos(d, q)) / 2).max())
    merged = np.average(np.array(qs), axis=0, weights=weights)
    return cos(np.concatenate(ds), merged), len(blocks)


def test_block_split_and_merge_match_reference(tiny_v3_path, reference):
    context = 300
    fam = load_family(tiny_v3_path, rerank_block_tokens=context)
    rng = random.Random(7)
    docs = [random_text(rng, rng.randint(20, 400)) for _ in range(20)]
    query = "birds sing in the park"
    plan, result = run(fam, query, docs, max_doc_length=64)
    expected, n_blocks = reference_blocks(reference, query, docs, context=context, max_doc_length=64)
    assert n_blocks >= 3 and len(plan.items) == n_blocks
    np.testing.assert_allclose(result.scores, expected, atol=TOL)
    # the per-block query vectors really differ, so the merge is exercised
    q_vecs = [fam.run_batch([it.payload])[0][0] for it in plan.items]
    assert not np.allclose(q_vecs[0], q_vecs[1], atol=1e-3)


def test_block_size_limit_125_documents(family):
    plan, result = run(family, "q", ["x"] * 260)
    assert [it.payload.n_docs for it in plan.items] == [125, 125, 10]
    assert result.scores.shape == (260,)


def test_document_and_query_truncation(family, reference):
    rng = random.Random(1)
    long_doc = random_text(rng, 3000)
    ids = reference.tok(long_doc)["input_ids"]
    assert len(ids) > 40
    cut = reference.tok.decode(ids[:40])
    _, a = run(family, "cat", [long_doc, "dog"], max_doc_length=40)
    _, b = run(family, "cat", [cut, "dog"], max_doc_length=40)
    np.testing.assert_allclose(a.scores, b.scores, atol=TOL)
    long_query = random_text(rng, 6000)
    q_ids = reference.tok(long_query)["input_ids"]
    assert len(q_ids) > 512
    plan, _ = run(family, long_query, ["dog"])
    assert reference.tok.decode(q_ids[:512]) + "<|rerank_token|>" in reference.tok.decode(plan.items[0].payload.ids)


def test_max_doc_length_over_limit_is_422(family):
    with pytest.raises(ValidationFailedError) as exc:
        run(family, "q", ["a"], max_doc_length=8193)
    assert exc.value.errors[0].field == "body -> max_doc_length"


def test_batched_blocks_equal_single_blocks(family):
    """Blocks of different lengths padded into one batch give the scores they get alone."""
    rng = random.Random(3)
    jobs = [("cats", [random_text(rng, rng.randint(5, 300)) for _ in range(k)]) for k in (1, 3, 6)]
    plans = [run(family, q, d)[0] for q, d in jobs]
    payloads = [p.items[0].payload for p in plans]
    together = family.run_batch(payloads)
    for payload, (q_t, d_t) in zip(payloads, together, strict=True):
        q_a, d_a = family.run_batch([payload])[0]
        np.testing.assert_allclose(q_t, q_a, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(cos(d_t, q_t), cos(d_a, q_a), atol=TOL)


def test_attention_is_sdpa_and_a_lone_block_has_no_mask(family, monkeypatch):
    """No eager n×n attention matrix: every layer calls SDPA; a block that runs alone passes no mask
    (SDPA's causal kernel), so memory stays linear in the block length."""
    import torch.nn.functional as F

    assert family.model.config._attn_implementation == "sdpa"
    calls: list[tuple[bool, bool, int]] = []
    real_sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, *args, is_causal=False, **kwargs):
        calls.append((attn_mask is None, bool(is_causal), q.shape[-2]))
        return real_sdpa(q, k, v, attn_mask, *args, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    plan, _ = run(family, "cats", ["a dog sat", "the cat sat on a mat"])
    n = plan.items[0].n_tokens
    assert calls == [(True, True, n)] * family.model.config.num_hidden_layers
