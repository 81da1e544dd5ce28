"""The recognition rule format (catalog `Detect`) and its priority order, on config-only folders.

These folders hold no weights: recognition reads config.json, modules.json,
config_sentence_transformers.json, the file listing, README.md and the HF-cache path only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jinaserve.catalog import Detect, ModelSpec
from jinaserve.errors import ModelLoadError
from jinaserve.models.detect import FolderFacts, UnrecognisedCheckpointError, recognise
from jinaserve.models.resolve import detect_spec, resolve


def folder(root: Path, name: str, config: dict, files: dict[str, object] | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config))
    for rel, content in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return d


def row(id_: str, *rules: Detect, family: str = "fam", **extra: object) -> ModelSpec:
    return ModelSpec(id=id_, family=family, kind="embedding", detect=rules, extra=dict(extra))


def test_every_condition_must_hold(tmp_path):
    f = FolderFacts.read(folder(tmp_path, "a", {"architectures": ["X"], "model_type": "m",
                                                 "auto_map": {"AutoModel": "org/code--modeling_x.X"},
                                                 "task_names": ["a", "b"], "nested": {"k": 3}, "empty": []},
                                {"adapters/t/adapter_config.json": {}, "config_sentence_transformers.json":
                                 {"prompts": {"query": "Q: "}}, "modules.json": [{"type": "custom_st.Transformer"}]}))
    ok = [Detect(architectures=("Y", "X")), Detect(model_type=("m",)), Detect(auto_map=("modeling_x",)),
          Detect(config_keys=("task_names",)), Detect(config={"task_names": "b"}), Detect(config={"nested.k": 3}),
          Detect(files=("adapters/*/adapter_config.json",)), Detect(no_files=("onnx",)),
          Detect(st_modules=("custom_st",)), Detect(st_prompts={"query": "Q: "})]
    bad = [Detect(architectures=("Y",)), Detect(model_type=("n",)), Detect(auto_map=("modeling_y",)),
           Detect(config_keys=("empty",)), Detect(config={"task_names": "c"}), Detect(config={"nested.k": 4}),
           Detect(files=("adapters/adapter_config.json",)), Detect(no_files=("adapters",)),
           Detect(st_modules=("Pooling",)), Detect(st_prompts={"query": "Query: "}), Detect(),
           Detect(architectures=("X",), model_type=("n",))]
    rows = [row(f"ok{i}", r) for i, r in enumerate(ok)]
    assert {r.id for r in rows if recognise(f, [r])} == {r.id for r in rows}
    assert [r for i, r in enumerate(bad) if recognise(f, [row(f"bad{i}", r)])] == []


def test_most_specific_rule_wins_then_priority_then_error(tmp_path):
    f = FolderFacts.read(folder(tmp_path, "a", {"architectures": ["X"], "model_type": "m", "hidden_size": 8}))
    general = row("general", Detect(architectures=("X",)))
    specific = row("specific", Detect(architectures=("X",), config={"hidden_size": 8}))
    assert recognise(f, [general, specific]).row.id == "specific"  # type: ignore[union-attr]
    low, high = row("low", Detect(model_type=("m",))), row("high", Detect(model_type=("m",), priority=1))
    assert recognise(f, [low, high]).row.id == "high"  # type: ignore[union-attr]
    with pytest.raises(UnrecognisedCheckpointError, match=r"matches 2 catalog models equally.*NAME|--models low="):
        recognise(f, [low, row("twin", Detect(model_type=("m",)))])


def test_a_name_the_folder_gives_itself_picks_among_matching_rows_only(tmp_path):
    cfg = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl"}
    card = "---\nlicense: other\n---\n\n# jina-embeddings-v4-vllm-code: merged\n"
    f = FolderFacts.read(folder(tmp_path, "a", cfg, {"README.md": card}))
    assert f.hints == ["jina-embeddings-v4-vllm-code"] and f.licence == "other"
    assert recognise(f).row.id == "jina-embeddings-v4-vllm-code"  # type: ignore[union-attr]
    # the title names a catalog model whose rules do not match the files: the name is ignored
    g = FolderFacts.read(folder(tmp_path, "b", {"architectures": ["JinaForRanking"], "model_type": "qwen3"},
                                {"README.md": "# jina-embeddings-v3\n"}))
    assert recognise(g).row.id == "jina-reranker-v3"  # type: ignore[union-attr]


def test_hf_cache_snapshot_path_is_a_name(tmp_path):
    snap = tmp_path / "hub" / "models--jinaai--jina-embeddings-v4-vllm-text-matching" / "snapshots" / "abc123"
    folder(snap.parent, snap.name, {"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                    "model_type": "qwen2_5_vl"})
    spec = detect_spec(snap, "abc123")
    assert spec.id == "abc123" and spec.task_names == ["text-matching"]
    assert spec.family == "jina_v4"


def test_lookalike_merged_repos_without_a_name_are_an_error_that_lists_them(tmp_path):
    d = folder(tmp_path, "my-model", {"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                      "model_type": "qwen2_5_vl"})
    with pytest.raises(ModelLoadError) as err:
        resolve(str(d))
    msg = err.value.message
    for name in ("jina-embeddings-v4-vllm-retrieval", "jina-embeddings-v4-vllm-text-matching",
                 "jina-embeddings-v4-vllm-code", f"={d}", "jinaserve inspect"):
        assert name in msg
    d5 = folder(tmp_path, "v5", {"architectures": ["JinaEmbeddingsV5Model"], "model_type": "jina_embeddings_v5",
                                 "is_decoder": False})
    with pytest.raises(ModelLoadError, match="jina-embeddings-v5-text-nano-clustering"):
        resolve(str(d5))


def test_jina_looking_folder_matching_no_row_fails_and_says_what_it_found(tmp_path):
    d = folder(tmp_path, "my-model", {"architectures": ["JinaEmbeddingsV9Model"], "model_type": "jina_embeddings_v9",
                                      "auto_map": {"AutoModel": "jinaai/jina-v9-code--modeling.JinaEmbeddingsV9Model"}},
               {"adapters/retrieval/adapter_config.json": {}})
    with pytest.raises(UnrecognisedCheckpointError) as err:
        resolve(str(d))
    msg = err.value.message
    for part in ("looks like a Jina model", "JinaEmbeddingsV9Model", "jina_embeddings_v9", "jinaai/jina-v9-code",
                 "adapters/retrieval", f"NAME={d}", "jinaserve inspect"):
        assert part in msg, part
    assert err.value.status == 503


def test_plain_checkpoints_still_use_the_generic_families(tmp_path, tiny_bert_folder):
    spec = detect_spec(tiny_bert_folder, "x")
    assert (spec.family, spec.kind) == ("sentence_transformer", "embedding")
    ce = folder(tmp_path, "ce", {"architectures": ["BertForSequenceClassification"], "model_type": "bert"},
                {"README.md": "---\nlicense: mit\n---\n# a reranker\n"})
    spec = detect_spec(ce, "ce")
    assert (spec.family, spec.kind, spec.licence) == ("cross_encoder", "rerank", "mit")


def test_legacy_detect_architectures_and_detect_config_keys_still_work(tmp_path):
    f = FolderFacts.read(folder(tmp_path, "a", {"architectures": ["NewArch"], "text_config": {"base": "b2"}}))
    legacy = row("legacy", detect_architectures=("NewArch",))
    assert recognise(f, [legacy]).row.id == "legacy"  # type: ignore[union-attr]
    # `detect_config`: dotted key -> allowed values, telling apart rows that share an architecture
    v1 = row("v1", detect_architectures=("NewArch",), detect_config={"text_config.base": ["b1"]})
    v2 = row("v2", detect_architectures=("NewArch",), detect_config={"text_config.base": ["b2", "b3"]})
    assert recognise(f, [v1, v2]).row.id == "v2"  # type: ignore[union-attr]
    assert recognise(f, [v1]) is None
    assert Detect(config={"k": ("a", "b")}).specificity == 1


def test_catalog_rules_are_consistent():
    """Every row with rules has a family; no two rows of different families share an identical rule."""
    from jinaserve.catalog import CATALOG

    seen: dict[str, str] = {}
    for spec in CATALOG.values():
        for rule in spec.detect_rules:
            assert rule.specificity > 0, spec.id
            key = repr(rule)
            assert seen.setdefault(key, spec.family) == spec.family, (spec.id, rule)
