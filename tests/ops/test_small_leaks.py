"""Issue 11 item 8: small leaks.

* `/readyz` answers without an API key, so it names models by their served names and gives a short reason
  for a failed load — never the server's local paths (they stay in the server log);
* `GET /v1/models/{unknown}` is a 404, as OpenAI answers (the OpenAI SDK raises `NotFoundError`).
"""

from __future__ import annotations

import shutil
import time

import httpx
import openai
import pytest

from helpers import server_in_thread

KEY = "sk-leak-test-1234"


def test_readyz_and_errors_show_no_local_paths(tiny_bert_path, tmp_path):
    broken = tmp_path / "private-models" / "broken"
    shutil.copytree(tiny_bert_path, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 100)  # corrupt weights: the load fails
    missing = tmp_path / "private-models" / "missing-model"  # no such folder
    with server_in_thread(models=[f"tiny={tiny_bert_path}", f"broken={broken}", str(missing)],
                          api_keys=[KEY]) as srv:
        deadline = time.time() + 60
        while True:
            ready = httpx.get(srv.url + "/readyz")  # no key: probes are open
            if all(m["state"] != "loading" for m in ready.json()["models"].values()) or time.time() > deadline:
                break
            time.sleep(0.1)
        assert ready.status_code == 503
        body = ready.json()
        assert set(body["models"]) == {"tiny", "broken", "missing-model"}
        for name in ("broken", "missing-model"):
            error = body["models"][name]["error"]
            assert body["models"][name]["state"] == "failed" and 0 < len(error) <= 203
        assert str(tmp_path) not in ready.text and "private-models" not in ready.text, ready.text
        assert str(tiny_bert_path) not in ready.text
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": "broken", "input": "x"},
                       headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 503 and "failed to load" in r.json()["detail"]
        assert str(tmp_path) not in r.text


def test_unknown_model_card_is_404(tiny_bert_path):
    with server_in_thread(models=[f"tiny={tiny_bert_path}"]) as srv:
        r = httpx.get(srv.url + "/v1/models/no-such-model")
        assert r.status_code == 404 and "no-such-model" in r.json()["detail"]
        assert r.json()["error"]["code"] == "model_not_found"
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        assert client.models.retrieve("tiny").id == "tiny"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("no-such-model")
