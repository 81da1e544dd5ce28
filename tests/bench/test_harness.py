"""The benchmark harness: exact-token texts, target evaluation, profile summary, and one real cell end to end."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.run_all import ROOT, Cell, Run, evaluate_targets, summarise_collapsed
from benchmarks.textgen import LONG_WORDS, SHORT_WORDS, make_texts, minilm_dir
from benchmarks.workloads import ALL_KEYS, build_workloads


def test_texts_have_exact_token_counts():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    for n in (SHORT_WORDS, LONG_WORDS, 500):
        counts = {len(tok(t)["input_ids"]) for t in make_texts(20, n, seed=5)}
        assert counts == {n + 2}
    assert make_texts(3, 12, seed=1) == make_texts(3, 12, seed=1)  # deterministic
    assert make_texts(3, 12, seed=1) != make_texts(3, 12, seed=2)


def test_workloads_cover_the_issue():
    ws = {w.key: w for w in build_workloads()}
    assert set(ws) == set(ALL_KEYS)
    assert (ws["short-8x32-b64"].clients, ws["short-8x32-b64"].per_request) == (8, 32)
    assert (ws["long-64x1-b64"].clients, ws["long-64x1-b64"].per_request) == (64, 1)
    assert ws["long-8x32-float"].fmt == "float" and ws["long-8x32-float"].tokens_per_input == 252
    assert ws["rerank-32x500"].tokens_per_input == 511  # 8-word query + 500-token doc + 3 specials ≤ 512


def _run_with(cells: list[tuple[str, str, float]]) -> Run:
    run = Run({"command": "x", "duration": 1}, {})
    for key, engine, sps in cells:
        run.add(Cell(engine, key, True, sentences_s=sps))
    return run


def test_targets_are_ratios_of_the_same_run():
    run = _run_with([("short-8x32-b64", "jinaserve", 100.0), ("short-8x32-b64", "st", 110.0),
                     ("short-8x32-b64", "infinity", 50.0), ("short-8x32-float", "jinaserve", 89.0),
                     ("short-64x1-b64", "jinaserve", 300.0), ("short-64x1-b64", "jinaserve-bs1", 100.0)])
    t = {x["target"]: x for x in evaluate_targets(run)}
    st = t["HTTP 8×32 base64 (short) vs in-process sentence-transformers"]
    assert abs(st["value"] - 100 / 110) < 1e-9 and st["met"] is False  # 0.909 < 0.95
    assert t["HTTP 8×32 base64 (short) vs Infinity"]["met"] is True  # 2.0 ≥ 1.5
    assert t["64×1 (short): dynamic batching vs --max-batch-size 1"]["met"] is True  # exactly 3.0
    assert t["float vs base64 at 8×32 (short, 384-d)"]["met"] is False  # 0.89 < 0.90
    run.overhead = {"overhead_p50_ms": 1.2}
    over = next(x for x in evaluate_targets(run) if x["unit"] == "ms")
    assert over["met"] is False and over["lower_is_better"]


def test_profile_summary_counts_inclusive_and_own_time():
    text = "MainThread;a (x.py:1);b (x.py:2) 30\nMainThread;a (x.py:1) 10\nworker;c (y.py:3) 60\n"
    md = summarise_collapsed(text, "t")
    assert "100 samples" in md
    assert "| 40.0% | `a (x.py:1)` |" in md  # inclusive: 30 + 10
    assert "| 60.0% | `c (y.py:3)` |" in md
    assert "| 30.0% | `b (x.py:2)` |" in md


def test_one_real_cell_end_to_end(tmp_path):
    """`python -m benchmarks.run_all` on one 1-second cell against a real jinaserve server."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--engines", "jinaserve", "--workloads", "short-8x32-b64",
         "--duration", "1", "--no-overhead", "--no-profile", "--out", str(tmp_path)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    md = (tmp_path / "latest.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| workload |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "workload", "engine", "inputs/s", "tokens/s", "p50 ms", "p99 ms", "peak RSS MiB", "CPU ms/input",
        "× ST in-proc", "× Infinity", "× llama.cpp"]
    rows = [line for line in md.splitlines() if line.startswith("| short 8×32 base64 | jinaserve |")]
    assert len(rows) == 1
    cols = [float(c.strip().replace(",", "")) for c in rows[0].strip("|").split("|")[2:8]]
    inputs_s, tokens_s, p50, p99, rss, cpu = cols
    assert inputs_s > 0 and abs(tokens_s - 14 * inputs_s) <= 1 and 0 < p50 <= p99 and rss > 50 and cpu > 0
    cell = json.loads((tmp_path / "latest.json").read_text())["cells"]["short-8x32-b64"]["jinaserve"]
    assert cell["ok"] and cell["requests"] >= 8 and cell["p99_ms"] >= cell["p50_ms"]
    assert abs(cell["tokens_s"] - cell["sentences_s"] * 14) < 1e-6
