"""jina-reranker-v2 (flash XLM-R layout → native class, sliding windows) and cross-request batching."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rr_builders import random_text

from jinaserve.engine.service import ModelService
from jinaserve.jobs import RerankDocument, RerankJob, RerankOptions
from jinaserve.models.cross_encoder import CrossEncoderFamily, sliding_windows
from jinaserve.models.jina_reranker_v3 import JinaRerankerV3Family
from jinaserve.models.loading import LoadOptions
from jinaserve.models.resolve import resolve

TOL = 1e-5


@pytest.fixture(scope="module")
def v2(tiny_v2) -> tuple[CrossEncoderFamily, object, object]:
    from transformers import AutoTokenizer

    path, native = tiny_v2
    spec = resolve(f"jina-reranker-v2-base-multilingual={path}").spec
    fam = CrossEncoderFamily.load(spec, path, LoadOptions(device="cpu", dtype="float32", threads=1))
    return fam, native, AutoTokenizer.from_pretrained(str(path))


def job(query: str, docs: list[str], **options) -> RerankJob:
    return RerankJob("m", query, [RerankDocument(text=d, original=d) for d in docs], RerankOptions(**options))


def scores_of(fam, j: RerankJob) -> np.ndarray:
    plan = fam.plan_rerank(j)
    return plan.assemble(fam.run_batch([it.payload for it in plan.items]) if plan.items else []).scores


@torch.no_grad()
def native_score(native, ids: list[int]) -> float:
    return float(torch.sigmoid(native(input_ids=torch.tensor([ids])).logits.view(-1))[0])


def test_flash_layout_maps_onto_native_class(v2):
    fam, native, tok = v2
    docs = ["a dog sat", "the cat sat on mat", "music", ""]
    got = scores_of(fam, job("the cat", docs))
    for d, s in zip(docs, got, strict=True):
        sep = tok.sep_token_id
        ids = tok("the cat")["input_ids"] + [sep] + tok(d, add_special_tokens=False)["input_ids"] + [sep]
        if d:  # the same as the tokenizer's own pair template <s> q </s></s> d </s>
            assert ids == tok("the cat", d)["input_ids"]
        assert tok.convert_ids_to_tokens(ids)[:1] == ["<s>"] and ids.count(sep) == 3
        assert abs(s - native_score(native, ids)) < TOL
    assert fam.spec.max_tokens == 128 and fam.max_query_tokens == 64  # 130 positions − 2; query ≤ half


def reference_windows(tok, query: str, doc: str, max_length: int, max_query: int, overlap: int) -> list[list[int]]:
    """The v2 rerank() helper's pre-processing, transcribed."""
    q = tok(query, truncation=True, max_length=max_query)["input_ids"]
    budget = max_length - len(q) - 2
    ov = min(overlap, budget // 4)
    p = tok(doc, add_special_tokens=False)["input_ids"]
    if len(p) <= budget:
        return [[*q, tok.sep_token_id, *p, tok.sep_token_id]]
    out, start = [], 0
    while start < len(p):
        end = start + budget
        chunk = p[-budget:] if end >= len(p) else p[start:end]
        start = end - ov if end < len(p) else end
        out.append([*q, tok.sep_token_id, *chunk, tok.sep_token_id])
    return out


def test_long_documents_use_sliding_windows_max(v2):
    fam, native, tok = v2
    rng = random.Random(5)
    docs = [random_text(rng, 2500), random_text(rng, 40), random_text(rng, 900)]
    query = "birds in the park"
    plan = fam.plan_rerank(job(query, docs))
    expected_windows = [reference_windows(tok, query, d, 128, 64, 80) for d in docs]
    assert len(expected_windows[0]) >= 4
    assert [it.payload.ids for it in plan.items] == [w for ws in expected_windows for w in ws]
    assert all(len(it.payload.ids) <= 128 for it in plan.items)
    got = plan.assemble(fam.run_batch([it.payload for it in plan.items])).scores
    expected = [max(native_score(native, w) for w in ws) for ws in expected_windows]
    np.testing.assert_allclose(got, expected, atol=TOL)


@given(n=st.integers(0, 60), window=st.integers(1, 20), overlap=st.integers(0, 5))
@settings(max_examples=50, deadline=None)
def test_sliding_windows_cover_everything(n, window, overlap):
    overlap = min(overlap, window // 4)
    ids = list(range(n))
    ws = sliding_windows(ids, window, overlap)
    assert all(len(w) == min(window, n) for w in ws)
    assert sorted(set(i for w in ws for i in w)) == ids
    assert ws[-1][-1:] == ids[-1:]


# --------------------------------------------------------------------------- concurrency property
MIXED_BATCHES = {"count": 0}


class Recording:
    """The family, with each batch's payload token lists recorded (to see requests sharing batches)."""

    def __init__(self, family) -> None:
        self.family = family
        self.spec = family.spec
        self.batches: list[list[tuple[int, ...]]] = []

    def plan_rerank(self, j):
        return self.family.plan_rerank(j)

    def run_batch(self, payloads):
        self.batches.append([tuple(p.ids) for p in payloads])
        return self.family.run_batch(payloads)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def services(v2, tiny_v3_path: Path):
    v3 = JinaRerankerV3Family.load(resolve(f"jina-reranker-v3={tiny_v3_path}").spec, tiny_v3_path,
                                   LoadOptions(device="cpu", dtype="float32", threads=1, rerank_block_tokens=400))
    out = {"v2": ModelService("v2", Recording(v2[0]), max_batch_tokens=2048, max_batch_size=64),
           "v3": ModelService("v3", Recording(v3), max_batch_tokens=1500, max_batch_size=8)}
    yield out
    for s in out.values():
        s.close()


@given(data=st.data())
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_concurrent_requests_get_the_scores_they_get_alone(services, data):
    name = data.draw(st.sampled_from(["v2", "v3"]))
    service = services[name]
    n_requests = data.draw(st.integers(2, 5))
    seed = data.draw(st.integers(0, 10_000))
    rng = random.Random(seed)
    jobs = [job(random_text(rng, rng.randint(3, 60)),
                [random_text(rng, rng.randint(0, 700)) for _ in range(rng.randint(1, 12))],
                max_doc_length=rng.choice([None, 64]))
            for _ in range(n_requests)]
    alone = [service.rerank_sync(j).scores for j in jobs]
    results: list[np.ndarray | None] = [None] * n_requests
    barrier = threading.Barrier(n_requests)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = service.rerank_sync(jobs[i]).scores

    family = service.family
    owner = {tuple(it.payload.ids): i for i, j in enumerate(jobs) for it in family.plan_rerank(j).items}
    family.batches.clear()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a, r in zip(alone, results, strict=True):
        assert r is not None
        np.testing.assert_allclose(r, a, atol=TOL)
    if any(len({owner[ids] for ids in batch}) > 1 for batch in family.batches):
        MIXED_BATCHES["count"] += 1


def test_concurrent_requests_did_share_batches():
    """Runs after the property test: requests really were co-batched in some of its examples."""
    assert MIXED_BATCHES["count"] >= 1
