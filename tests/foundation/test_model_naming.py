"""Naming a generic model by Hugging Face repo id (from the HF cache, offline) and by NAME=SOURCE, and
parity of the generic families with sentence-transformers' own classes (bi-encoder without a Normalize
module; cross-encoder = sigmoid of the single logit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from helpers import build_tiny_bert, copy_bert_tokenizer, server_in_thread
from jinaserve import Embedder, Reranker

TEXTS = ["The cat sits on the mat.", "A quick brown fox jumps over the lazy dog.", "Hello"]
QUERY = "Where does the cat sit?"
DOCS = ["The cat sits on the mat.", "Stocks fell sharply today after the announcement.", "Cats like mats",
        "A completely unrelated sentence about tax law and the weather in spring."]
SHA = "0123456789abcdef0123456789abcdef01234567"


def fake_hf_cache(cache: Path, repo: str, src: Path) -> None:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<sha>/...}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(src, root / "snapshots" / SHA)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(SHA)


@pytest.fixture(scope="module")
def spread_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1-label BERT cross-encoder initialised with large weights (initializer_range 0.5), so its
    scores spread over (0, 1) and a wrong pair format or a missing sigmoid would show."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("ce-spread")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1, initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(path)
    copy_bert_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path, spread_ce_path: Path) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    fake_hf_cache(cache, "acme/tiny-st", tiny_bert_path)
    fake_hf_cache(cache, "acme/tiny-ce", spread_ce_path)
    return cache


def test_generic_hub_ids_from_the_cache(hub_cache, tiny_bert_path, spread_ce_path):
    """`--models org/name` for checkpoints that are not in the catalog: the family is detected from the
    downloaded (here: cached) files; NAME=org/name serves it under NAME."""
    with Embedder(str(tiny_bert_path), device="cpu") as local:
        ref = local.encode(TEXTS)
    with server_in_thread(models=["acme/tiny-st", "mine=acme/tiny-st", "acme/tiny-ce"],
                          cache_dir=str(hub_cache)) as srv:
        ready = httpx.get(srv.url + "/readyz").json()
        assert ready["status"] == "ready", ready
        cards = {m["id"]: m for m in httpx.get(srv.url + "/v1/models").json()["data"]}
        assert cards["acme/tiny-st"]["family"] == "sentence_transformer"
        assert cards["mine"]["family"] == "sentence_transformer"
        assert cards["acme/tiny-ce"]["family"] == "cross_encoder"
        for name in ("acme/tiny-st", "mine"):
            r = httpx.post(srv.url + "/v1/embeddings", json={"model": name, "input": TEXTS}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == name
            got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
            np.testing.assert_allclose(got, ref, atol=1e-5)
        r = httpx.post(srv.url + "/v1/rerank", json={"model": "acme/tiny-ce", "query": QUERY, "documents": DOCS},
                       timeout=60)
        assert r.status_code == 200, r.text
    with Reranker(str(spread_ce_path), device="cpu") as rr:
        expected = rr.rerank(QUERY, DOCS)
    got = r.json()["results"]
    assert [x["index"] for x in got] == [x["index"] for x in expected]
    np.testing.assert_allclose([x["relevance_score"] for x in got], [x["relevance_score"] for x in expected],
                               atol=1e-5)


def test_unknown_hub_id_offline_is_a_clear_error(hub_cache):
    from jinaserve.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"acme/missing.*offline"):
        Embedder("acme/missing", cache_dir=str(hub_cache), offline=True, device="cpu")


def test_cross_encoder_matches_sentence_transformers(spread_ce_path):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(spread_ce_path), device="cpu")
    expected = np.asarray(ce.predict([(QUERY, d) for d in DOCS]), dtype=np.float64)
    assert np.ptp(expected) > 0.05, expected  # the scores really differ, so the comparison means something
    with Reranker(str(spread_ce_path), device="cpu") as rr:
        assert rr.spec.family == "cross_encoder"
        scores = np.asarray(rr.score(QUERY, DOCS), dtype=np.float64)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_bi_encoder_without_normalize_matches_sentence_transformers(tmp_path):
    """No Normalize module: `normalized=false` is exactly sentence-transformers' output; the default
    (`normalized=true`, as the hosted API) is that vector at unit length."""
    from sentence_transformers import SentenceTransformer

    path = build_tiny_bert(tmp_path / "no-norm", seed=7, pooling="mean", normalize=False)
    expected = SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-3)
    with Embedder(str(path), device="cpu") as emb:
        raw = emb.encode(TEXTS, normalized=False)
        unit = emb.encode(TEXTS)
    np.testing.assert_allclose(raw, expected, atol=1e-5)
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_a_clean_error(tiny_bert_path):
    """`--device cuda` on a CPU-only host: a typed load error (503 / clean CLI message), not a traceback."""
    from typer.testing import CliRunner

    from jinaserve.cli import app
    from jinaserve.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        Embedder(str(tiny_bert_path), device="cuda")
    result = CliRunner().invoke(app, ["embed", "-m", str(tiny_bert_path), "--device", "cuda", "hi"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "error: device 'cuda' requested" in result.output and "Traceback" not in result.output


def test_offline_fallback_goes_straight_to_the_bundled_folder(monkeypatch, tmp_path):
    """No hub and nothing cached: the fallback is the bundled folder itself (no second, possibly slow, hub
    attempt), served under its catalog id, and /readyz names it so while it loads."""
    from helpers import minilm_dir
    from jinaserve.config import Settings
    from jinaserve.engine.registry import ModelRegistry, default_model_args
    from jinaserve.models.loading import LoadOptions
    from jinaserve.models.resolve import locate, resolve
    from jinaserve.runtimes import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout_s=3.0: False)
    settings = Settings(offline=False, cache_dir=str(tmp_path / "empty-cache"))
    args = default_model_args(settings)
    assert len(args) == 1 and args[0].startswith("all-MiniLM-L6-v2=")
    assert Path(args[0].partition("=")[2]).resolve() == minilm_dir().resolve()

    def no_hub(*a, **k):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(hub, "fetch", no_hub)
    ref, folder = locate(resolve(args[0]), LoadOptions(offline=False))
    assert ref.served_id == "all-MiniLM-L6-v2" and ref.spec.family == "sentence_transformer"
    assert ref.spec.hf_repo == "sentence-transformers/all-MiniLM-L6-v2" and folder == minilm_dir().resolve()
    registry = ModelRegistry(settings)
    registry.mark_loading(args)
    assert [(s.state, s.served_id) for s in registry.status()] == [("loading", "all-MiniLM-L6-v2")]
