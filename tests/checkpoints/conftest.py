"""Session fixtures: one tiny checkpoint per published layout, each also copied to a neutral folder.

`layouts` maps a case name to `Case(row, named, neutral, kind)`: `named` is served as `row=named`
(the catalog row chosen by name), `neutral` is a copy under `my-model-<n>/` served without a name, so
only the files can say what it is.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import ck_layouts as L

from helpers import build_tiny_bert, minilm_dir, torch_threads


@dataclass(frozen=True)
class Case:
    row: str  # catalog id the folder is
    named: Path  # served as `row=named`
    neutral: Path  # served by path alone
    kind: str = "embedding"
    over_http: bool = False  # the one case per family also checked over HTTP


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):  # tiny models: one thread is fastest, and the machine is shared
        yield


@pytest.fixture(scope="session")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("ck-layouts")
    built = root / "built"
    jt, rr, v4, v3 = L.jt(), L.rr(), L.v4(), L.v3()
    cases: dict[str, tuple[str, Path, str, bool]] = {}

    cases["minilm"] = ("all-MiniLM-L6-v2", minilm_dir(), "embedding", True)

    hf = v3.build_hf_checkpoint(built / "v3-hf")
    cases["v3-hf"] = ("jina-embeddings-v3", hf.folder, "embedding", True)
    remote = v3.build_remote_checkpoint(hf, built / "v3-remote")
    cases["v3-remote"] = ("jina-embeddings-v3", remote, "embedding", False)
    xlmr = L.copy(remote, built / "v3-remote-xlmr")  # `architectures` as some copies of the repo show it
    L.edit_config(xlmr, architectures=["XLMRobertaModel"])
    cases["v3-remote-xlmr"] = ("jina-embeddings-v3", xlmr, "embedding", False)
    noarch = L.copy(hf.folder, built / "v3-hf-noarch")  # recognised from `model_type` alone
    L.edit_config(noarch, architectures=None)
    cases["v3-hf-noarch"] = ("jina-embeddings-v3", noarch, "embedding", False)

    small = jt.build_v5_small(built / "v5-small")
    L.v5_base_st_files(small)
    cases["v5-small"] = ("jina-embeddings-v5-text-small", small, "embedding", True)
    nano = jt.build_v5_nano(built / "v5-nano")
    L.v5_base_st_files(nano)
    cases["v5-nano"] = ("jina-embeddings-v5-text-nano", nano, "embedding", False)
    merged = jt.build_v5_small(built / "v5-small-merged", seed=7, with_adapters=False)
    L.v5_base_st_files(merged)
    L.model_card(merged, "jina-embeddings-v5-text-small-retrieval: Retrieval-Targeted Embedding Distillation")
    cases["v5-small-merged"] = ("jina-embeddings-v5-text-small-retrieval", merged, "embedding", False)

    code = jt.build_code(built / "code")
    L.st_pooling_files(code, L.CODE_PROMPTS)
    cases["code"] = ("jina-code-embeddings-0.5b", code, "embedding", True)

    v2 = jt.build_v2(built / "v2")
    cases["v2"] = ("jina-embeddings-v2-base-en", v2, "embedding", True)
    v2c = jt.build_v2(built / "v2-code", qk_post_norm=True, prefix="bert.", seed=4)
    L.edit_config(v2c, auto_map={"AutoConfig": "jinaai/jina-bert-v2-qk-post-norm--configuration_bert.JinaBertConfig",
                                 "AutoModel": "jinaai/jina-bert-v2-qk-post-norm--modeling_bert.JinaBertModel"})
    cases["v2-code"] = ("jina-embeddings-v2-base-code", v2c, "embedding", False)

    cases["rr3"] = ("jina-reranker-v3", rr.build_tiny_v3(built / "rr3"), "rerank", True)
    cases["rr2"] = ("jina-reranker-v2-base-multilingual", rr.build_tiny_v2(built / "rr2")[0], "rerank", True)
    cases["m0"] = ("jina-reranker-m0", rr.build_tiny_m0(built / "m0")[0], "rerank", True)

    base4 = v4.build_tiny_v4(built / "v4")
    cases["v4"] = ("jina-embeddings-v4", base4, "embedding", True)
    vllm = L.v4_vllm(base4, built / "v4-vllm", "retrieval")
    L.model_card(vllm, "jina-embeddings-v4-vllm-retrieval", licence="other")
    cases["v4-vllm"] = ("jina-embeddings-v4-vllm-retrieval", vllm, "embedding", False)

    mm = L.mm()
    cases["clip-v2"] = ("jina-clip-v2", mm.build_clip_v2(built / "clip-v2").folder, "embedding", True)
    cases["clip-v1"] = ("jina-clip-v1", mm.build_clip_v1(built / "clip-v1").folder, "embedding", False)
    cases["colbert-v2"] = ("jina-colbert-v2", mm.build_colbert_v2(built / "colbert-v2").folder, "embedding", True)
    cases["colbert-v1"] = ("jina-colbert-v1-en", mm.build_colbert_v1(built / "colbert-v1").folder, "embedding",
                           False)
    rr1 = mm.build_reranker_v1(built / "rr1").folder
    cases["rr1"] = ("jina-reranker-v1-base-en", rr1, "rerank", True)

    out: dict[str, Case] = {}
    for n, (name, (row, folder, kind, http)) in enumerate(cases.items(), start=1):
        out[name] = Case(row, folder, L.copy(folder, root / "neutral" / f"my-model-{n}"), kind, http)
    # the -nano per-task repo as a plain sentence-transformers checkpoint, in the HF cache layout: the
    # snapshot folder is a commit hash, the repo id is in the path
    nano_st = root / "hub" / "models--jinaai--jina-embeddings-v5-text-nano-retrieval" / "snapshots" / "0123abcd"
    plain = L.copy(nano, nano_st)
    for extra in ("adapters", "modules.json", "config_sentence_transformers.json"):
        p = plain / extra
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    L.edit_config(plain, model_type="eurobert", architectures=["EuroBertModel"], auto_map=None, task_names=None)
    L.st_pooling_files(plain, L.V5_PROMPTS)
    out["v5-nano-merged-st"] = Case("jina-embeddings-v5-text-nano-retrieval", plain, plain, "embedding", False)
    # the three reranker-v1 sizes have the same files: the repo id in the HF cache path names the size
    turbo = L.copy(rr1, root / "hub" / "models--jinaai--jina-reranker-v1-turbo-en" / "snapshots" / "4567cdef")
    out["rr1-turbo-cache"] = Case("jina-reranker-v1-turbo-en", turbo, turbo, "rerank", False)
    return out


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ck-bert") / "my-model")
