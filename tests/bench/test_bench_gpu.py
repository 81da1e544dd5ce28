"""`make bench-gpu`: what can be checked without a GPU — it refuses cleanly, and its MFU denominators come
from the datasheet table (never guessed for an unknown GPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmarks.gpu import datasheet_peak
from benchmarks.run_all import ROOT


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_refuses_cleanly_without_cuda(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path)], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "needs a CUDA GPU" in proc.stderr and "not measured" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started


@pytest.mark.parametrize(("name", "dtype", "peak"), [
    ("NVIDIA H200", "bfloat16", 989.0), ("NVIDIA H100 80GB HBM3 SXM", "bfloat16", 989.0),
    ("NVIDIA H100 PCIe", "float16", 756.0), ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
    ("NVIDIA L4", "float16", 121.0), ("NVIDIA L40S", "bfloat16", 362.0), ("Tesla T4", "float16", 65.0),
    ("Tesla T4", "bfloat16", None), ("NVIDIA GeForce RTX 3090", "bfloat16", None)])
def test_datasheet_peaks(name, dtype, peak):
    assert datasheet_peak(name, dtype) == peak
