"""The real OpenAI Python SDK pointed at the server with `base_url`."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

openai = pytest.importorskip("openai")

TEXTS = ["The sky is blue.", "Grass is green.", "Roses are red and violets are blue."]


@pytest.fixture(scope="module")
def reference(main_server) -> np.ndarray:
    r = httpx.post(main_server.url + "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": TEXTS})
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def client(srv, **kw):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_openai_sdk_embeddings(main_server, reference, encoding_format):
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}  # None: SDK sends base64
    resp = client(main_server).embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, **kwargs)
    assert resp.model == "all-MiniLM-L6-v2"
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert [d.index for d in resp.data] == [0, 1, 2]
    np.testing.assert_allclose(got, reference, atol=1e-6)
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 0
    single = client(main_server).embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], dimensions=64)
    assert len(single.data[0].embedding) == 64


def test_openai_sdk_models_and_errors(main_server, guarded_server):
    ids = {m.id for m in client(main_server).models.list()}
    assert "all-MiniLM-L6-v2" in ids
    with pytest.raises(openai.BadRequestError) as info:
        client(main_server).embeddings.create(model="no-such-model", input="x")
    assert "no-such-model" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        client(guarded_server, api_key="wrong").embeddings.create(model="tiny", input="x")
    ok = client(guarded_server, api_key="key-two").embeddings.create(model="tiny", input="x")
    assert len(ok.data[0].embedding) == 32
