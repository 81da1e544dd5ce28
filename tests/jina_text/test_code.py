"""jina-code-embeddings (stock Qwen2): ten task prompts, last-token pooling with left padding.

Tolerance: max abs difference 2e-5 per coordinate of unit vectors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refs import backbone, embed, last_token_vector, raw_tokenize, service, unit

from jinaserve.errors import ValidationFailedError
from jinaserve.jobs import EmbedInput, EmbedOptions
from jinaserve.models.pooling import last_token_pool
from jinaserve.runtimes.torch_runtime import pad_batch

ATOL = 2e-5
TEXTS = ["def add(a, b):\n    return a + b", "how do I read a csv file", "import numpy as np"]
# research §6.1, from the model cards
PROMPTS = {
    "nl2code.query": "Find the most relevant code snippet given the following query:\n",
    "nl2code.passage": "Candidate code snippet:\n",
    "qa.query": "Find the most relevant answer given the following question:\n",
    "qa.passage": "Candidate answer:\n",
    "code2code.query": "Find an equivalent code snippet given the following code snippet:\n",
    "code2code.passage": "Candidate code snippet:\n",
    "code2nl.query": "Find the most relevant comment given the following code snippet:\n",
    "code2nl.passage": "Candidate comment:\n",
    "code2completion.query": "Find the most relevant completion given the following start of code snippet:\n",
    "code2completion.passage": "Candidate completion:\n",
}


@pytest.fixture(scope="module")
def code_svc(code_dir):
    with service("jina-code-embeddings-0.5b", code_dir) as svc:
        yield svc


def test_ten_tasks_prefixes_and_reference_vectors(code_svc, code_dir):
    assert sorted(code_svc.spec.task_names) == sorted(PROMPTS)
    model = backbone(code_dir, "qwen2")
    for task, prompt in PROMPTS.items():
        plan = code_svc.family.plan_embed([EmbedInput(text=t) for t in TEXTS], EmbedOptions(task=task))
        assert [i.payload.ids for i in plan.items] == [raw_tokenize(code_dir, prompt + t) for t in TEXTS]
        ref = np.stack([last_token_vector(model, raw_tokenize(code_dir, prompt + t)) for t in TEXTS])
        np.testing.assert_allclose(embed(code_svc, TEXTS, task=task), ref, atol=ATOL, err_msg=task)
    # default task is nl2code.query
    np.testing.assert_allclose(embed(code_svc, TEXTS), embed(code_svc, TEXTS, task="nl2code.query"), atol=1e-6)


def test_left_padding_and_last_token_pooling(code_svc):
    fam = code_svc.family
    assert fam.padding_side == "left" and fam.pooling == "last"
    seqs = [[5, 6, 7], [8], [9, 10]]
    _, mask = pad_batch(seqs, fam.pad_id, side="left")
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    hidden = torch.arange(3 * 3 * 2, dtype=torch.float32).view(3, 3, 2)
    # left padding: every sequence ends in the last column
    assert torch.equal(last_token_pool(hidden, mask), hidden[:, -1])
    # right padding: the last real token is at len-1
    _, rmask = pad_batch(seqs, fam.pad_id, side="right")
    assert torch.equal(last_token_pool(hidden, rmask), hidden[[0, 1, 2], [2, 0, 1]])
    # a padded batch equals the items run one by one
    batch = embed(code_svc, TEXTS, task="qa.passage")
    singles = np.stack([embed(code_svc, [t], task="qa.passage")[0] for t in TEXTS])
    np.testing.assert_allclose(batch, singles, atol=ATOL)


def test_dimensions_and_normalisation(code_svc):
    full = embed(code_svc, TEXTS)
    cut = embed(code_svc, TEXTS, dimensions=5)
    np.testing.assert_allclose(cut, np.stack([unit(v[:5]) for v in full]), atol=1e-6)
    # the hosted code-model schema has no `normalized`: vectors are always unit length
    np.testing.assert_allclose(np.linalg.norm(embed(code_svc, TEXTS, normalized=False), axis=1), 1, atol=1e-5)
    with pytest.raises(ValidationFailedError):
        embed(code_svc, TEXTS, dimensions=code_svc.spec.dims + 1)
    with pytest.raises(ValidationFailedError) as exc:
        embed(code_svc, TEXTS, task="retrieval.query")
    assert "nl2code.query" in exc.value.errors[0].message


def test_mixed_tasks_in_flight(code_svc):
    expected = {t: embed(code_svc, TEXTS, task=t) for t in ("nl2code.query", "code2nl.passage")}
    plans = []
    with code_svc.batcher._cond:
        for task in ("nl2code.query", "code2nl.passage") * 2:
            plan = code_svc._plan_embed([EmbedInput(text=t) for t in TEXTS], EmbedOptions(task=task))
            plans.append((task, plan, code_svc.batcher.submit(plan.items)))
    for task, plan, futs in plans:
        got = np.stack([unit(v) for v in plan.assemble([f.result(timeout=60) for f in futs])])
        np.testing.assert_allclose(got, expected[task], atol=ATOL, err_msg=task)
