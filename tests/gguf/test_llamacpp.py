"""The llama.cpp runtime against the torch path: same family code, only the network differs.

Tolerances (stated by the issue): per-vector cosine to the torch vector ≥ 0.999 for F16 files and
≥ 0.99 for Q8_0; jina-reranker-v3 (F16): same order, scores within 5e-3 absolute.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from helpers import server_in_thread, server_process
from jinaserve import Embedder, Reranker
from jinaserve.errors import ModelNotFoundError
from jinaserve.models.gguf import load_gguf_family as load_family
from jinaserve.models.loading import LoadOptions
from jinaserve.runtimes.hub import WeightsUnavailableError
from jinaserve.runtimes.llamacpp_runtime import GGUFTokenizer, LlamaCppBackbone, locate_gguf

F16_MIN_COS, Q8_MIN_COS, RERANK_ATOL = 0.999, 0.99, 5e-3
TEXTS = ["Berlin is the capital of Germany.", "hello", "A man is playing a guitar on the stage tonight.",
         "the quick brown fox jumps over the lazy dog " * 6, "GGUF runs on llama.cpp; torch runs on PyTorch!"]
THREADS = 2


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _encode(model: str, task: str | None = None) -> np.ndarray:
    with Embedder(model, device="cpu", offline=True, threads=THREADS) as emb:
        return emb.encode(TEXTS, task=task)


@pytest.fixture(scope="module")
def minilm_torch(gguf_models) -> np.ndarray:
    with Embedder(f"all-MiniLM-L6-v2={gguf_models['minilm_torch']}", device="cpu", offline=True,
                  threads=THREADS) as emb:
        return emb.encode(TEXTS)


@pytest.mark.parametrize("quant,min_cos", [("F16", F16_MIN_COS), ("Q8_0", Q8_MIN_COS)])
def test_minilm_gguf_matches_torch(gguf_models, minilm_torch, quant, min_cos):
    path = gguf_models["minilm"] / f"all-MiniLM-L6-v2-{quant}.gguf"
    with Embedder(f"all-MiniLM-L6-v2={path}", device="cpu", offline=True, threads=THREADS) as emb:
        assert emb.spec.dims == 384
        got = emb.encode(TEXTS)
        dims = emb.encode(TEXTS, dimensions=64)  # Matryoshka truncation + renormalisation: same code path
    cos = _cos(got, minilm_torch)
    assert cos.min() >= min_cos, cos
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(dims, got[:, :64] / np.linalg.norm(got[:, :64], axis=-1, keepdims=True), atol=1e-5)


def test_folder_of_ggufs_picks_the_quant(gguf_models, minilm_torch):
    with pytest.raises(ModelNotFoundError, match="several GGUF files"):
        locate_gguf(_spec("x"), gguf_models["minilm"], quant=None)
    with pytest.raises(ModelNotFoundError, match="no Q4_K_M GGUF file"):
        locate_gguf(_spec("x"), gguf_models["minilm"], quant="Q4_K_M")
    assert locate_gguf(_spec("x"), gguf_models["minilm"], quant="q8_0").name.endswith("Q8_0.gguf")
    # a folder + --quant, served under a name outside the catalog: pooling from the GGUF metadata (mean)
    with Embedder(f"mini={gguf_models['minilm']}", device="cpu", offline=True, threads=THREADS,
                  runtime="llamacpp", quant="Q8_0") as emb:
        assert emb.spec.pooling == "mean" and emb.spec.family == "gguf_text"
        assert _cos(emb.encode(TEXTS), minilm_torch).min() >= Q8_MIN_COS


def _spec(model_id: str):
    from jinaserve.catalog import ModelSpec

    return ModelSpec(id=model_id, family="gguf_text", kind="embedding")


def test_gguf_vocabulary_tokenises_like_the_hf_tokenizer(gguf_models):
    """MiniLM's GGUF carries the real WordPiece vocabulary: its tokenisation equals tokenizer.json's."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(gguf_models["minilm_torch"]))
    backbone = LlamaCppBackbone(gguf_models["minilm"] / "all-MiniLM-L6-v2-F16.gguf", threads=THREADS)
    try:
        tok = GGUFTokenizer(backbone)
        texts = [*TEXTS, "Übermäßig lange Wörter, naïve café"]
        assert tok(texts)["input_ids"] == hf(texts)["input_ids"]
        cut = tok(texts, truncation=True, max_length=8)["input_ids"]
        assert cut == hf(texts, truncation=True, max_length=8)["input_ids"]
        assert len(tok) == len(hf) and tok.pad_token_id == hf.pad_token_id
    finally:
        backbone.close()


def test_batched_hidden_states_equal_one_by_one(gguf_models):
    """Several sequences in one llama.cpp decode (distinct seq ids) give each sequence's own states."""
    backbone = LlamaCppBackbone(gguf_models["minilm"] / "all-MiniLM-L6-v2-F16.gguf", threads=THREADS, n_batch=64)
    try:
        seqs = [[101, 7592, 2088, 102], [101, 2023, 2003, 1037, 3231, 102], [101, 102]] * 5  # 15 seqs > 64 tokens
        together = backbone.hidden_states(seqs)
        for s, h in zip(seqs, together, strict=True):
            np.testing.assert_allclose(h, backbone.hidden_states([s])[0], atol=1e-4)
        assert [h.shape for h in together] == [(len(s), 384) for s in seqs]
    finally:
        backbone.close()


@pytest.mark.parametrize("quant,min_cos", [("F16", F16_MIN_COS), ("Q8_0", Q8_MIN_COS)])
def test_v5_nano_task_file_matches_torch(gguf_models, quant, min_cos):
    """EuroBERT (v5-nano) per-task file: prefix by task, last-token pooling, same as the torch family."""
    row = "jina-embeddings-v5-text-nano-retrieval"
    for task in ("retrieval.query", "retrieval.passage"):
        ref = _encode(f"{row}={gguf_models['nano_torch']}", task=task)
        got = _encode(f"{row}={gguf_models['nano'] / f'nano-{quant}.gguf'}", task=task)
        assert _cos(got, ref).min() >= min_cos, (task, _cos(got, ref))
    q = _encode(f"{row}={gguf_models['nano'] / f'nano-{quant}.gguf'}", task="retrieval.query")
    p = _encode(f"{row}={gguf_models['nano'] / f'nano-{quant}.gguf'}", task="retrieval.passage")
    assert np.abs(q - p).max() > 1e-3  # the two prefixes reach the network


def test_code_embeddings_qwen2_left_padding_matches_torch(gguf_models):
    row = "jina-code-embeddings-0.5b"
    ref = _encode(f"{row}={gguf_models['code_torch']}", task="nl2code.query")
    got = _encode(f"{row}={gguf_models['code'] / 'code-F16.gguf'}", task="nl2code.query")
    assert _cos(got, ref).min() >= F16_MIN_COS, _cos(got, ref)


def test_reranker_v3_scores_match_torch(gguf_models):
    """Qwen3 token states (pooling none) at the marker tokens → projector in torch → cosines."""
    query = "which animal sat on the mat"
    docs = ["the cat sat on a mat", "birds sing loud songs about green trees", "a dog ran to the park",
            "search engine query document ranking", "people walk slowly past old houses near river banks"]
    with Reranker(f"jina-reranker-v3={gguf_models['reranker_torch']}", device="cpu", offline=True,
                  threads=THREADS) as rr:
        ref = rr.rerank(query, docs)
    with Reranker(f"jina-reranker-v3={gguf_models['reranker'] / 'reranker-F16.gguf'}", device="cpu", offline=True,
                  threads=THREADS) as rr:
        got = rr.rerank(query, docs)
        assert rr._service.family.runtime == "llamacpp"
    assert [r["index"] for r in got] == [r["index"] for r in ref]
    np.testing.assert_allclose([r["relevance_score"] for r in got], [r["relevance_score"] for r in ref],
                               atol=RERANK_ATOL)


def _fake_hub_cache(root, gguf_models) -> str:
    """An HF cache holding jina-embeddings-v5-text-nano-retrieval-GGUF with its F16 and Q8_0 files (the hub itself
    is unreachable here; the lookup, file choice and loading are the real code)."""
    repo = "jinaai/jina-embeddings-v5-text-nano-retrieval-GGUF"
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    for q in ("F16", "Q8_0"):
        shutil.copy(gguf_models["nano"] / f"nano-{q}.gguf", snap / f"jina-embeddings-v5-text-nano-retrieval-{q}.gguf")
    return str(root)


def test_hub_row_quant_from_the_cache(gguf_models, tmp_path):
    """The row's GGUF repo, only the chosen quant's file; the GGUF's own vocabulary tokenises."""
    cache = _fake_hub_cache(tmp_path / "hub", gguf_models)
    opts = LoadOptions(runtime="llamacpp", quant="q8_0", offline=True, cache_dir=cache)
    from jinaserve.catalog import lookup

    spec = lookup("jina-embeddings-v5-text-nano-retrieval")
    assert locate_gguf(spec, None, quant="Q8_0", offline=True, cache_dir=cache).name.endswith("-Q8_0.gguf")
    assert locate_gguf(spec, None, quant=None, offline=True, cache_dir=cache).name.endswith("-F16.gguf")  # default
    with pytest.raises(ModelNotFoundError, match="no Q9_X GGUF file"):
        locate_gguf(spec, None, quant="Q9_X", offline=True, cache_dir=cache)
    with pytest.raises(WeightsUnavailableError, match=r"pull jina-embeddings-v5-text-nano-retrieval --quant Q4_K_M"):
        locate_gguf(spec, None, quant="Q4_K_M", offline=True, cache_dir=cache)
    family = load_family(spec, None, opts)
    try:
        assert isinstance(family.tokenizer, GGUFTokenizer)  # no tokenizer.json in the repo
        assert family.gguf_file.endswith("-Q8_0.gguf")
    finally:
        family.model.close()


def test_pull_quant_cli(gguf_models, tmp_path, monkeypatch):
    """`jinaserve pull ROW --quant Q8_0`: the row's GGUF repo and only that file (here: served by the cache);
    a quant the row lacks, or --quant on a row without GGUF files, is a clear usage error."""
    from typer.testing import CliRunner

    from jinaserve.cli import app

    cache = _fake_hub_cache(tmp_path / "hub", gguf_models)
    runner = CliRunner()
    r = runner.invoke(app, ["pull", "jina-embeddings-v5-text-nano-retrieval", "--quant", "q8_0", "--cache-dir", cache])
    assert r.exit_code == 0, r.output
    assert "Q8_0 (*-Q8_0.gguf)" in r.output and "jina-embeddings-v5-text-nano-retrieval-GGUF" in r.output
    r = runner.invoke(app, ["pull", "jina-embeddings-v5-text-nano-retrieval", "--quant", "Q9_X", "--cache-dir", cache])
    assert r.exit_code == 2 and "no Q9_X GGUF file" in r.output
    r = runner.invoke(app, ["pull", "all-MiniLM-L6-v2", "--quant", "Q8_0", "--cache-dir", cache])
    assert r.exit_code == 2 and "no GGUF files" in r.output
    # another quant of the same repo is NOT satisfied by the cached snapshot: it must be fetched (offline: error)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = runner.invoke(app, ["pull", "jina-embeddings-v5-text-nano-retrieval", "--quant", "Q4_K_M", "--cache-dir",
                            cache])
    assert r.exit_code == 1 and "not in the local cache" in " ".join(r.output.split()), r.output


def test_serve_cli_runtime_llamacpp_quant(gguf_models, tmp_path):
    """The issue's command line, as a real `jinaserve serve` process: a catalog row from the (hub) cache with
    `--runtime llamacpp --quant Q8_0`, next to a local folder of GGUF files served with the same flags."""
    cache = _fake_hub_cache(tmp_path / "hub", gguf_models)
    row = "jina-embeddings-v5-text-nano-retrieval"
    with server_process("--models", f"{row},mini={gguf_models['minilm']}", "--runtime", "llamacpp", "--quant", "Q8_0",
                        "--threads", str(THREADS), "--ctx-size", "512", "--llama-batch", "256",
                        env={"HF_HUB_CACHE": cache, "JINASERVE_CACHE_DIR": cache}, timeout=120) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/v1/embeddings", json={"model": row, "input": TEXTS[:3], "task": "retrieval.query",
                                            "dimensions": 16})
        assert r.status_code == 200, r.text
        vecs = np.array([d["embedding"] for d in r.json()["data"]])
        assert vecs.shape == (3, 16) and r.json()["usage"]["total_tokens"] > 0
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=-1), 1.0, atol=1e-5)
        bad = c.post("/v1/embeddings", json={"model": row, "input": ["x"], "task": "nonsense"})
        assert bad.status_code == 422  # the family's task validation, unchanged
        r = c.post("/v1/embeddings", json={"model": "mini", "input": TEXTS})
        assert r.status_code == 200, r.text
        assert np.array([d["embedding"] for d in r.json()["data"]]).shape == (len(TEXTS), 384)


def test_http_end_to_end_with_a_local_gguf(gguf_models, minilm_torch):
    path = gguf_models["minilm"] / "all-MiniLM-L6-v2-Q8_0.gguf"
    with server_in_thread(models=[f"minilm-gguf={path}"], threads=THREADS) as srv, srv.client() as c:
        r = c.post("/v1/embeddings", json={"model": "minilm-gguf", "input": TEXTS})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert _cos(got, minilm_torch).min() >= Q8_MIN_COS
        r = c.post("/v1/embeddings", json={"model": "minilm-gguf", "input": TEXTS[:2], "encoding_format": "base64"})
        assert r.status_code == 200 and isinstance(r.json()["data"][0]["embedding"], str)


def test_clear_errors(gguf_models, tmp_path):
    from jinaserve.catalog import lookup

    with pytest.raises(ModelNotFoundError, match="has no GGUF files in the catalog"):
        locate_gguf(lookup("all-MiniLM-L6-v2"), None, quant=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no \.gguf file"):
        locate_gguf(_spec("x"), empty, quant=None)


def test_catalog_rows_name_their_gguf_files():
    from jinaserve.catalog import lookup

    for size in ("small", "nano"):
        for task in ("retrieval", "text-matching", "classification", "clustering"):
            row = lookup(f"jina-embeddings-v5-text-{size}-{task}")
            assert row.gguf.repo == f"jinaai/jina-embeddings-v5-text-{size}-{task}-GGUF"
            assert row.gguf.files["Q8_0"] == "*-Q8_0.gguf" and "IQ1_S" in row.gguf.files
    assert lookup("jina-reranker-v3").gguf.extra_files == ("projector.safetensors",)
    assert "BF16" in lookup("jina-reranker-v3").gguf.files
    for name in ("retrieval", "code", "matching"):
        row = lookup(f"jina-embeddings-v4-text-{name}")
        assert row.family == "gguf_text" and row.hf_repo is None and row.dims == 2048
    assert lookup("jina-code-embeddings-1.5b").gguf.repo == "jinaai/jina-code-embeddings-1.5b-GGUF"



def test_concurrent_requests_share_llamacpp_batches(gguf_models, minilm_torch):
    """Concurrency goes through the engine's batcher: while llama.cpp is busy (its lock held here), requests from
    16 threads queue up and then run together in a few decode calls, each getting its own vector back."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    path = gguf_models["minilm"] / "all-MiniLM-L6-v2-F16.gguf"
    with Embedder(f"all-MiniLM-L6-v2={path}", device="cpu", offline=True, threads=THREADS) as emb:
        service = emb._service
        backbone = service.family.model
        calls = []
        real = backbone.hidden_states

        def counting(seqs):
            calls.append(len(seqs))
            return real(seqs)

        backbone.hidden_states = counting
        texts = [TEXTS[i % len(TEXTS)] + f" #{i}" for i in range(16)]
        backbone._lock.acquire()
        released = False
        try:
            with ThreadPoolExecutor(16) as pool:
                futures = [pool.submit(emb.encode, [t]) for t in texts]
                deadline = time.monotonic() + 20
                while service.batcher.queue_depth + service.batcher.in_flight < len(texts):
                    assert time.monotonic() < deadline, "requests did not reach the batcher"
                    time.sleep(0.01)
                backbone._lock.release()
                released = True
                got = np.concatenate([f.result(timeout=60) for f in futures])
        finally:
            if not released:
                backbone._lock.release()
        batched = list(calls)
        ref = emb.encode(texts)
    assert len(batched) <= 3 and sum(batched) == len(texts), batched  # one busy batch + the queued ones together
    assert _cos(got, ref).min() >= 0.9999


def test_v4_text_gguf_row_prefix_and_mean_pooling(gguf_models):
    """A GGUF-only row (jina-embeddings-v4-text-retrieval: family gguf_text, no torch path) over a Qwen2 GGUF:
    the row's "Query: " prefix and mean pooling, checked against the same network in transformers by hand."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    row = "jina-embeddings-v4-text-retrieval"
    with Embedder(f"{row}={gguf_models['code'] / 'code-F16.gguf'}", device="cpu", offline=True,
                  threads=THREADS) as emb:
        assert emb.spec.family == "gguf_text"
        got = emb.encode(TEXTS, task="retrieval.query")
        short = emb.encode(TEXTS[:2], task="retrieval.query", dimensions=8)
    tok = AutoTokenizer.from_pretrained(str(gguf_models["code_torch"]))
    model = AutoModel.from_pretrained(str(gguf_models["code_torch"])).eval()
    ref = []
    with torch.no_grad():
        for text in TEXTS:
            ids = torch.tensor([tok("Query: " + text)["input_ids"]])
            ref.append(model(input_ids=ids).last_hidden_state[0].mean(0).numpy())
    assert _cos(got, np.stack(ref)).min() >= F16_MIN_COS, _cos(got, np.stack(ref))
    assert short.shape == (2, 8)


def test_amx_cpus_load_without_extra_buffer_types(tmp_path: Path) -> None:
    """llama.cpp's AMX repacked matmul crashes (SIGSEGV) on AMX CPUs: loads there switch repacking off."""
    import llama_cpp.llama as llama_module

    from jinaserve.runtimes.llamacpp_runtime import _extra_buffer_types, cpu_has_amx

    amx = tmp_path / "amx"
    amx.write_text("processor : 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8 arch_capabilities\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_amx(str(amx)) and not cpu_has_amx(str(plain))
    assert not cpu_has_amx(str(tmp_path / "missing"))

    low = llama_module.llama_cpp
    assert low.llama_model_default_params().use_extra_bufts  # llama.cpp's default: repack
    with _extra_buffer_types(low, True):
        assert not low.llama_model_default_params().use_extra_bufts
    assert low.llama_model_default_params().use_extra_bufts  # restored after the load
    with _extra_buffer_types(low, False):
        assert low.llama_model_default_params().use_extra_bufts
