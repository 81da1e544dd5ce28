"""The benchmark harness: exact-token texts, target evaluation, profile summary, and one real cell end to end."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.run_all import (
    ENGINES,
    ROOT,
    Cell,
    Run,
    evaluate_targets,
    merge_rounds,
    runs_workload,
    summarise_collapsed,
)
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
    run = Run({"command": "x", "rounds": 3}, {})
    for key, engine, sps in cells:
        run.add(Cell(engine, key, True, sentences_s=sps))
    return run


def test_targets_compare_medians_of_equal_precision_only():
    run = _run_with([("short-8x32-b64", "jinaserve", 100.0), ("short-8x32-b64", "st", 110.0),
                     ("short-8x32-b64", "infinity", 50.0), ("short-8x32-b64", "infinity-onnx", 80.0),
                     ("short-8x32-b64", "jinaserve-bf16", 400.0), ("short-8x32-b64", "infinity-bf16", 300.0),
                     ("short-8x32-float", "jinaserve", 89.0),
                     ("short-64x1-b64", "jinaserve", 300.0), ("short-64x1-b64", "jinaserve-bs1", 100.0)])
    t = {x["target"]: x for x in evaluate_targets(run)}
    st = t["HTTP 8×32 base64 (short) vs in-process sentence-transformers"]
    assert abs(st["value"] - 100 / 110) < 1e-9 and st["met"] is False  # 0.909 < 0.95
    fp32 = t["HTTP 8×32 base64 (short) vs Infinity's best fp32 engine"]
    assert abs(fp32["value"] - 100 / 80) < 1e-9 and fp32["against"] == "infinity-onnx"  # the faster Infinity
    bf16 = t["HTTP 8×32 base64 (short) vs Infinity's best bf16 engine"]
    assert abs(bf16["value"] - 400 / 300) < 1e-9  # bf16 against bf16, never against fp32
    assert not any("int8 engine" in k for k in t)  # no int8 peer ran: no int8 row
    assert t["64×1 (short): dynamic batching vs --max-batch-size 1"]["met"] is True  # exactly 3.0
    assert t["float vs base64 at 8×32 (short, 384-d)"]["met"] is False  # 0.89 < 0.90
    run.overhead = {"overhead_p50_ms": 1.2}
    over = next(x for x in evaluate_targets(run) if x["unit"] == "ms")
    assert over["met"] is False and over["lower_is_better"]


def test_rounds_merge_into_medians_with_spread_and_mfu():
    w = next(x for x in build_workloads(["short-8x32-b64"]))
    rounds = [{"ok": True, "sentences_s": v, "p50_ms": 10.0 * i, "p99_ms": 20.0, "requests": 30 + i, "wall_s": 3.0,
               "peak_rss_mib": 500.0 + i, "cpu_ms_per_input": 1.0} for i, v in enumerate((90.0, 110.0, 100.0))]
    cell = merge_rounds("jinaserve", w, rounds, flops_tok=1e9, ceiling=100.0)
    assert cell.ok and cell.sentences_s == 100.0 and cell.spread == (90.0, 110.0) and cell.requests == 30
    assert cell.peak_rss_mib == 502.0 and cell.p50_ms == 10.0
    # 100 inputs/s × 14 tokens × 1 GFLOP/token = 1.4 TFLOP/s against a 100 GFLOP/s ceiling
    assert abs(cell.mfu - 14.0) < 1e-9
    failed = merge_rounds("jinaserve", w, [*rounds[:2], {"ok": False, "error": "boom"}], None, None)
    assert not failed.ok and failed.error == "boom"  # one failed round fails the cell: nothing hides


def test_engines_run_the_workloads_they_are_compared_on():
    ws = {w.key: w for w in build_workloads()}
    assert runs_workload(ENGINES["jinaserve-bs1"], ws["short-64x1-b64"])
    assert not runs_workload(ENGINES["jinaserve-bs1"], ws["short-8x32-b64"])
    assert runs_workload(ENGINES["jinaserve-cache"], ws["cache-16x1-b64"])
    assert not runs_workload(ENGINES["infinity-bf16"], ws["rerank-32x50"])  # rerank peers are fp32
    assert runs_workload(ENGINES["infinity-onnx-int8"], ws["long-8x32-b64"])
    assert {e.precision for e in ENGINES.values()} == {"fp32", "bf16", "int8"}


def test_flops_per_token_matches_torch_flop_counter(minilm_path):
    """The FLOPs formula against torch's own count of a real MiniLM forward (an independent reference)."""
    import torch
    from benchmarks.flops import config_of, flops_per_token
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(minilm_path), attn_implementation="eager").eval()
    ids = torch.randint(1000, 2000, (2, 40))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    counted = counter.get_total_flops()
    ours = flops_per_token(config_of(minilm_path), 40) * ids.numel()
    assert abs(ours - counted) / counted < 0.01, (ours, counted)


def test_profile_summary_counts_inclusive_and_own_time():
    text = "MainThread;a (x.py:1);b (x.py:2) 30\nMainThread;a (x.py:1) 10\nworker;c (y.py:3) 60\n"
    md = summarise_collapsed(text, "t")
    assert "100 samples" in md
    assert "| 40.0% | `a (x.py:1)` |" in md  # inclusive: 30 + 10
    assert "| 60.0% | `c (y.py:3)` |" in md
    assert "| 30.0% | `b (x.py:2)` |" in md


def test_one_real_cell_end_to_end(tmp_path):
    """`python -m benchmarks.run_all` on one short cell, 2 rounds, against a real jinaserve server."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--engines", "jinaserve", "--workloads", "short-8x32-b64",
         "--rounds", "2", "--min-seconds", "0.5", "--min-requests", "3", "--max-seconds", "2", "--no-overhead",
         "--no-profile", "--no-real", "--no-quality", "--out", str(tmp_path)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    md = (tmp_path / "latest.md").read_text()
    assert "Matmul ceiling measured at the start and at the end" in md and "CPU flags that decide the fast paths" in md
    header = next(line for line in md.splitlines() if line.startswith("| workload |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "workload", "engine", "prec.", "inputs/s", "spread", "n", "tokens/s", "MFU", "p50 ms", "p99 ms",
        "peak RSS MiB", "CPU ms/input", "× peer"]
    rows = [line for line in md.splitlines() if line.startswith("| short 8×32 base64 | jinaserve |")]
    assert len(rows) == 1
    data = json.loads((tmp_path / "latest.json").read_text())
    cell = data["cells"]["short-8x32-b64"]["jinaserve"]
    assert cell["ok"] and len(cell["rounds"]) == 2 and cell["requests"] >= 3
    lo, hi = cell["spread"]
    assert lo <= cell["sentences_s"] <= hi
    assert abs(cell["tokens_s"] - cell["sentences_s"] * 14) < 1e-6
    # MFU against the higher of the start/end ceilings (on a loaded machine both can be low: no upper bound here)
    assert cell["mfu"] > 0 and data["ceiling_gflops"]["float32"] > 0
    start, end = data["machine"]["ceiling_start_end"]["float32"]
    assert data["ceiling_gflops"]["float32"] == max(start, end)
    assert data["machine"]["flags"] and "cpu" in data["machine"]
