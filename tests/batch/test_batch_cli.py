"""`jinaserve batch run` formats (Parquet / text / JSONL in; .npy / .jsonl out; failed rows) and
`jinaserve batch status | list | cancel` against a running server, through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jinaserve.cli import app

runner = CliRunner()


def _embed_reference(model_dir: Path, texts: list[str]) -> np.ndarray:
    from jinaserve import Embedder

    with Embedder(str(model_dir), offline=True) as emb:
        return emb.encode(texts)


def test_parquet_in_npy_out_and_text_in_jsonl_out(tmp_path: Path, tiny_bert_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = [f"parquet row {i} " * (1 + i % 4) for i in range(50)]
    pq.write_table(pa.table({"doc": texts, "id": list(range(50))}), tmp_path / "in.parquet", row_group_size=16)
    common = ["-m", f"tiny={tiny_bert_path}", "--offline", "--data-dir", str(tmp_path / "data")]
    r = runner.invoke(app, ["batch", "run", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "o.npy"),
                            "--text-field", "doc", *common])
    assert r.exit_code == 0, r.output
    ref = _embed_reference(tiny_bert_path, texts)
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ref, atol=1e-5)

    (tmp_path / "in.txt").write_text("\n".join(texts[:5]) + "\n\n")  # the blank line is not an input
    r = runner.invoke(app, ["batch", "run", str(tmp_path / "in.txt"), "--out", str(tmp_path / "o.jsonl"), *common])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [x["index"] for x in rows] == list(range(5))
    np.testing.assert_allclose([x["embedding"] for x in rows], ref[:5], atol=1e-5)


def test_rows_that_fail_go_to_the_errors_file(tmp_path: Path, tiny_bert_path: Path) -> None:
    lines = [{"text": "fine"}, {"title": "no text field"}, "a JSON string is a text", {"text": "also fine"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    out = tmp_path / "o.npy"
    r = runner.invoke(app, ["batch", "run", str(tmp_path / "in.jsonl"), "--out", str(out), "-m",
                            f"tiny={tiny_bert_path}", "--offline", "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 3, r.output
    vectors = np.load(out)
    assert vectors.shape[0] == 5 and np.isnan(vectors[[1, 4]]).all() and not np.isnan(vectors[[0, 2, 3]]).any()
    errors = [json.loads(x) for x in (tmp_path / "o.npy.errors.jsonl").read_text().splitlines()]
    assert [e["index"] for e in errors] == [1, 4] and "text" in errors[0]["error"]


def test_status_list_cancel_against_a_server(batch_server) -> None:
    with batch_server.client() as c:
        job = c.post("/v1/batch/embeddings", json={"model": "minilm", "input": [f"t {i}" for i in range(3000)]}).json()
    url = ["--url", batch_server.url]
    r = runner.invoke(app, ["batch", "status", job["batch_id"], *url])
    assert r.exit_code == 0 and json.loads(r.stdout)["batch_id"] == job["batch_id"]
    r = runner.invoke(app, ["batch", "list", "--json", *url])
    assert r.exit_code == 0 and job["batch_id"] in [j["batch_id"] for j in json.loads(r.stdout)]
    r = runner.invoke(app, ["batch", "cancel", job["batch_id"], *url])
    assert r.exit_code == 0 and json.loads(r.stdout)["batch_id"] == job["batch_id"]
    r = runner.invoke(app, ["batch", "status", "batch_missing", *url])
    assert r.exit_code == 1 and "404" in r.output
