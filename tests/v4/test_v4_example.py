"""examples/multimodal_search.py runs end to end on the tiny checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tiny_v4 import PNG

from helpers import ROOT


def _load_example():
    spec = importlib.util.spec_from_file_location("multimodal_search", ROOT / "examples" / "multimodal_search.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_multimodal_search_example(tiny_v4_path: Path, tmp_path: Path, capsys) -> None:
    example = _load_example()
    assert example.main(["--model", f"jina-embeddings-v4={tiny_v4_path}", "--device", "cpu", "--multivector",
                         "--json", "--dimensions", "32", "--query", "a red square", "--query", "stripes"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and out["dims"] == 32
    assert [r["query"] for r in out["results"]] == ["a red square", "stripes"]
    for r in out["results"]:
        hits = r["hits"]
        assert sorted(h["image"] for h in hits) == ["blue-stripes.png", "green-circle.png", "red-square.png"]
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert all(-1 <= h["score"] <= 1 and h["maxsim"] > 0 for h in hits)
    # user images given as paths work too
    (tmp_path / "x.png").write_bytes(PNG)
    assert example.main(["--model", f"jina-embeddings-v4={tiny_v4_path}", "--json",  # device auto
                         "--images", str(tmp_path / "x.png"), "--query", "q", "--top", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dims"] == 64 and out["results"][0]["hits"][0]["image"] == "x.png"
    from jinaserve.runtimes.torch_runtime import select_device

    assert out["device"] == select_device("auto")  # cuda → mps → cpu

