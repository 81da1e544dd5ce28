"""Issue 11 item 7: token-id inputs are refused by default.

langchain-openai's `OpenAIEmbeddings` (default `check_embedding_ctx_length=True`) sends tiktoken cl100k ids;
taken as the served model's own ids they gave a 200 with a wrong vector. The real OpenAI SDK sends the same
token-id arrays here (langchain-openai itself needs tiktoken's encoding file, which cannot be downloaded
offline): the server answers 422, and the message the SDK shows names the client fix. With
`allow_token_ids`, ids of the served model's own vocabulary give the same vector as the text. The rule holds
on every path that takes token ids: TEI's `inputs` may be id arrays too (`/embed`, `/embed_all`, `POST /`,
`/tei/{model}/...`); they get TEI's 422 naming the setting.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import openai
import pytest
from transformers import AutoTokenizer

from helpers import server_in_thread

TEXT = "token ids are not text"
# Ids of another tokenizer, as langchain-openai sends them (any integers: the server cannot tell whose they are).
FOREIGN_IDS = [5963, 14483, 527, 539, 1495]


def test_token_id_arrays_are_refused_naming_the_client_fix(tiny_bert_path):
    with server_in_thread(models=[f"tiny={tiny_bert_path}"]) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        for ids in ([FOREIGN_IDS], FOREIGN_IDS):  # a batch of arrays (langchain-openai) and one flat array
            with pytest.raises(openai.UnprocessableEntityError) as info:
                client.embeddings.create(model="tiny", input=ids, encoding_format="float")
            assert "check_embedding_ctx_length=False" in info.value.message
            assert "allow_token_ids" in info.value.message
        # the fix on the client side: send the text
        ok = client.embeddings.create(model="tiny", input=[TEXT], encoding_format="float")
        assert len(ok.data[0].embedding) == 32
        for path in ("/embed", "/tei/tiny/embed", "/", "/tei/tiny"):
            for inputs in (FOREIGN_IDS, [TEXT, FOREIGN_IDS]):
                r = httpx.post(srv.url + path, json={"inputs": inputs}, timeout=60)
                assert r.status_code == 422 and r.json()["error_type"] == "Validation", (path, r.text)
                assert "allow_token_ids" in r.json()["error"], r.text


def test_allow_token_ids_takes_the_models_own_ids(tiny_bert_path, tmp_path):
    ids = AutoTokenizer.from_pretrained(str(tiny_bert_path))(TEXT)["input_ids"]  # the served model's tokenizer
    # its own data dir: the batch job must run on this server (a store's jobs run in the process holding its lock)
    with server_in_thread(models=[f"tiny={tiny_bert_path}"], allow_token_ids=True, data_dir=str(tmp_path)) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        by_ids = client.embeddings.create(model="tiny", input=[ids], encoding_format="float")
        by_text = client.embeddings.create(model="tiny", input=[TEXT], encoding_format="float")
        np.testing.assert_allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
        assert by_ids.usage.total_tokens == len(ids)
        with pytest.raises(openai.BadRequestError, match="vocabulary"):  # ids the model does not have
            client.embeddings.create(model="tiny", input=[[101, 10**7, 102]], encoding_format="float")
        tei = httpx.post(srv.url + "/embed", json={"inputs": [TEXT, ids]}, timeout=60)  # TEI takes them too
        assert tei.status_code == 200, tei.text
        np.testing.assert_allclose(tei.json()[1], by_text.data[0].embedding, atol=1e-5)
        # and a batch job's line, whose body must equal the online answer
        job = httpx.post(srv.url + "/v1/batch/embeddings", json={"model": "tiny", "input": [[ids]]}).json()
        deadline = time.monotonic() + 60
        while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
            job = httpx.get(f"{srv.url}/v1/batch/{job['batch_id']}").json()
        assert job["stats"]["completed"] == 1, job
        line = json.loads(httpx.get(f"{srv.url}/v1/batch/{job['batch_id']}/output").text)
        np.testing.assert_allclose(line["response"]["body"]["data"][0]["embedding"], by_text.data[0].embedding,
                                   atol=1e-5)
