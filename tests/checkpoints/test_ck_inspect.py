"""Issue 12 item 5: `jinaserve inspect PATH_OR_ID` on every tiny checkpoint and on broken folders.

It must name the catalog row, family and layout of each published layout from a neutral folder, list tasks
with their adapters and prompts, dims, max tokens and licence, and exit 1 (with the reason) when the folder
would not load.
"""

from __future__ import annotations

import json
import shutil

import ck_layouts as L
import orjson
import pytest
from typer.testing import CliRunner

from jinaserve.catalog import lookup
from jinaserve.cli import app
from jinaserve.inspection import inspect_target

runner = CliRunner()


def cli(*args: str):
    result = runner.invoke(app, ["inspect", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout if "--json" in args else result.output


CASES = ["minilm", "v3-hf", "v3-remote", "v3-remote-xlmr", "v3-hf-noarch", "v5-small", "v5-nano", "v5-small-merged",
         "v5-nano-merged-st", "code", "v2", "v2-code", "rr3", "rr2", "m0", "v4", "v4-vllm", "clip-v2", "clip-v1",
         "colbert-v2", "colbert-v1", "rr1"]


@pytest.mark.parametrize("case", CASES)
def test_each_tiny_checkpoint_from_a_neutral_folder(layouts, case):
    c = layouts[case]
    code, out = cli(str(c.neutral), "--json")
    assert code == 0, out
    report = orjson.loads(out)
    row = lookup(c.row)
    assert row is not None
    assert report["ok"] is True and report["problems"] == [] and report["missing"] == []
    if case == "minilm":  # a generic checkpoint, not recognised as a catalog row: served by the generic family
        assert report["model"] is None and report["family"] == "sentence_transformer" and report["ok"]
        return
    assert (report["model"], report["family"], report["kind"]) == (c.row, row.family, row.kind)
    assert [t["name"] for t in report["tasks"]] == row.task_names
    assert [t["prefix"] for t in report["tasks"]] == [t.prefix for t in row.tasks]
    assert report["licence"] == row.licence and report["layout"]
    cfg = json.loads((c.neutral / "config.json").read_text())
    if row.family == "jina_colbert":  # ColBERT: the linear projection's rows, not the backbone's hidden size
        from safetensors import safe_open

        with safe_open(str(c.neutral / "model.safetensors"), "pt") as f:
            rows = f.get_slice("linear.weight").get_shape()[0]
        # (the tiny v1 projects its 64-wide hidden states to 128, as the published ones project 768 / 1024 to 128)
        assert report["dims"] == rows and not report["warnings"], report
    elif row.kind == "embedding" and "hidden_size" in {**cfg, **cfg.get("text_config", {})}:
        assert report["dims"] == cfg.get("hidden_size", cfg.get("text_config", {}).get("hidden_size"))


def test_text_output_names_what_matters(layouts):
    code, out = cli(str(layouts["v3-hf"].neutral))
    text = " ".join(out.split())
    assert code == 0
    for part in ("jina-embeddings-v3", "jina_v3", "native -hf layout", "retrieval.query", "adapter retrieval_query",
                 "Represent the query for retrieving evidence documents: ", "CC-BY-NC-4.0", "non-commercial",
                 "would load"):
        assert part in text, part


def test_named_folder_and_load(layouts):
    c = layouts["v2"]
    code, out = cli(f"{c.row}={c.named}", "--load", "--json")
    report = orjson.loads(out)
    assert code == 0 and report["load"]["served_as"] == c.row and report["load"]["dims"] == 32


def test_broken_folders_exit_1_with_the_reason(layouts, tmp_path):
    # a task adapter folder missing
    v5 = L.copy(layouts["v5-small"].neutral, tmp_path / "v5")
    shutil.rmtree(v5 / "adapters" / "clustering")
    code, out = cli(str(v5))
    assert code == 1 and "missing adapter config of clustering" in " ".join(out.split())
    # no weights
    v2 = L.copy(layouts["v2"].neutral, tmp_path / "v2")
    (v2 / "model.safetensors").unlink()
    code, out = cli(str(v2), "--json")
    assert code == 1 and any("weights" in m for m in orjson.loads(out)["missing"])
    # reranker-v3 without its projector
    rr3 = L.copy(layouts["rr3"].neutral, tmp_path / "rr3")
    from safetensors.torch import load_file, save_file

    sd = load_file(str(rr3 / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if not k.startswith("projector.")}, str(rr3 / "model.safetensors"))
    code, out = cli(str(rr3))
    assert code == 1 and "missing projector" in out
    # a ColBERT without its projection, a reranker-v1 without its classifier head
    for case, prefix, what in (("colbert-v2", "linear.", "ColBERT projection"), ("rr1", "classifier.",
                                                                                   "classifier head")):
        folder = L.copy(layouts[case].neutral, tmp_path / case)
        sd = load_file(str(folder / "model.safetensors"))
        save_file({k: v for k, v in sd.items() if not k.startswith(prefix)}, str(folder / "model.safetensors"))
        code, out = cli(str(folder))
        assert code == 1 and f"missing {what}" in " ".join(out.split()), out
    # a shard listed in the index but absent
    index = {"weight_map": {"a": "model-00002-of-00002.safetensors"}}
    (v2 / "model.safetensors.index.json").write_text(json.dumps(index))
    code, out = cli(str(v2))
    assert code == 1 and "model-00002-of-00002.safetensors" in out
    # a look-alike merged repo that does not say which task: the candidates and NAME=folder
    vllm = L.copy(layouts["v4-vllm"].neutral, tmp_path / "vllm")
    (vllm / "README.md").unlink()
    code, out = cli(str(vllm))
    text = " ".join(out.split())
    assert code == 1 and "jina-embeddings-v4-vllm-code" in text and f"={vllm}" in text
    # no config.json at all
    (tmp_path / "empty").mkdir()
    code, out = cli(str(tmp_path / "empty"))
    assert code == 1 and "no config.json" in out


def test_weights_that_do_not_load_fail_with_load(layouts, tmp_path):
    v2 = L.copy(layouts["v2"].neutral, tmp_path / "v2")
    (v2 / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")  # a corrupt file
    code, out = cli(str(v2))
    assert code == 0  # the files are all there...
    code, out = cli(str(v2), "--load")
    assert code == 1 and "loading failed" in out  # ...but the weights are not a JinaBERT


def test_catalog_id_uses_the_local_cache_only(layouts, tmp_path):
    report = inspect_target("jina-embeddings-v2-base-code", cache_dir=str(tmp_path / "empty-cache"))
    assert not report.ok and "jinaserve pull jina-embeddings-v2-base-code" in report.problems[0]
    assert report.model == "jina-embeddings-v2-base-code"  # the catalog facts are still shown
    # the same id found in a Hugging Face cache (snapshot + refs/main)
    repo_dir = tmp_path / "cache" / "models--jinaai--jina-embeddings-v2-base-code"
    L.copy(layouts["v2-code"].named, repo_dir / "snapshots" / "abc")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc")
    cache = tmp_path / "cache"
    report = inspect_target("jina-embeddings-v2-base-code", cache_dir=str(cache))
    assert report.ok, report.problems
    assert report.source == "Hugging Face cache (jinaai/jina-embeddings-v2-base-code)"
    assert report.layout == "JinaBERT v2, qk-post-norm"


def test_unknown_target_is_exit_1():
    code, out = cli("no-such-model-anywhere")
    assert code == 1 and "not a folder, a .gguf file, a catalog id" in " ".join(out.split())
