"""Generic cross-encoders (sequence classification, 1 label) on a tiny random-weight BERT with the MiniLM
tokenizer. References: sentence-transformers' CrossEncoder (short queries) and transformers' own model on
the documented truncation (query cut to half the context, then only the document is cut). Tolerance 1e-5."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from rr_builders import random_text

from helpers import build_tiny_bert
from jinaserve.jobs import RerankDocument, RerankJob
from jinaserve.models.cross_encoder import CrossEncoderFamily
from jinaserve.models.loading import LoadOptions
from jinaserve.models.resolve import resolve

TOL = 1e-5


@pytest.fixture(scope="module")
def ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_tiny_bert(tmp_path_factory.mktemp("rr-ce"), cross_encoder=True, seed=4)
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(path))
    with torch.no_grad():  # spread the random head's outputs so the scores are not all ~0.5
        model.classifier.weight.mul_(30)
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def family(ce_path: Path) -> CrossEncoderFamily:
    ref = resolve(str(ce_path))
    assert ref.spec.family == "cross_encoder"
    return CrossEncoderFamily.load(ref.spec, ce_path, LoadOptions(device="cpu", dtype="float32", threads=1))


def scores(fam: CrossEncoderFamily, query: str, docs: list[str]) -> np.ndarray:
    plan = fam.plan_rerank(RerankJob("ce", query, [RerankDocument(text=d, original=d) for d in docs]))
    assert len(plan.items) == len(docs)  # one pair per document, no windows
    return plan.assemble(fam.run_batch([it.payload for it in plan.items])).scores


def test_matches_sentence_transformers_cross_encoder(family, ce_path):
    from sentence_transformers import CrossEncoder

    rng = random.Random(2)
    docs = ["the cat sat on the mat", "dogs bark", "", random_text(rng, 4000), "music in the park"]
    got = scores(family, "where is the cat?", docs)
    ce = CrossEncoder(str(ce_path), max_length=family.max_tokens, device="cpu")
    expected = ce.predict([("where is the cat?", d) for d in docs], batch_size=8)
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert all(0 < s < 1 for s in got) and np.ptp(got) > 1e-3


@torch.no_grad()
def test_long_query_is_cut_to_half_the_context(family, ce_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(ce_path))
    model = BertForSequenceClassification.from_pretrained(str(ce_path), attn_implementation="eager").eval()
    rng = random.Random(3)
    query, docs = random_text(rng, 5000), [random_text(rng, 5000), "short"]
    q_cut = tok.decode(tok(query, add_special_tokens=False)["input_ids"][:family.max_tokens // 2])
    enc = tok([q_cut] * 2, docs, truncation="only_second", max_length=family.max_tokens, padding=True,
              return_tensors="pt")
    expected = torch.sigmoid(model(**enc).logits.view(-1)).numpy()
    np.testing.assert_allclose(scores(family, query, docs), expected, atol=TOL)


def test_more_than_one_label_is_refused(tmp_path):
    from transformers import BertForSequenceClassification

    path = build_tiny_bert(tmp_path / "two", cross_encoder=True)
    model = BertForSequenceClassification.from_pretrained(str(path), num_labels=2, ignore_mismatched_sizes=True)
    model.save_pretrained(str(path))
    spec = resolve(str(path)).spec
    with pytest.raises(ValueError, match="2 labels"):
        CrossEncoderFamily.load(spec, path, LoadOptions(device="cpu", dtype="float32", threads=1))
