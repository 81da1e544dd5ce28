"""`--dtype auto` on CPU: float32 unless the CPU has native bf16 AND the load-time probe shows bf16 faster AND
within the cosine floor; the choice is logged. CPU flags and probe timings are mocked where the test needs a
CPU other than this one; hidden states and cosines are always real."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from jinaserve.runtimes import cpu, torch_runtime
from jinaserve.runtimes.torch_runtime import auto_cpu_dtype

ZEN2_FLAGS = frozenset(["fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "bmi2", "avx2",
                        "sha_ni"])  # no bf16
SPR_FLAGS = ZEN2_FLAGS | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}


def _param_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


@pytest.fixture(scope="module")
def bert(tiny_bert_path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(tiny_bert_path), attn_implementation="sdpa").eval()


def test_native_bf16_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: " + " ".join(sorted(ZEN2_FLAGS)) + "\n")
    assert cpu.cpu_flags(str(info)) == ZEN2_FLAGS and cpu.cpu_model(str(info)) == "AMD EPYC 7B12"
    assert cpu.native_bf16(ZEN2_FLAGS) is None
    assert cpu.native_bf16(ZEN2_FLAGS | {"avx512_bf16"}) == "avx512_bf16"
    assert cpu.native_bf16(SPR_FLAGS) == "amx_bf16"
    assert cpu.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_auto_is_float32_on_a_cpu_without_native_bf16(bert, caplog, monkeypatch):
    probes = []
    monkeypatch.setattr(torch_runtime, "_probe_run", lambda *a, **k: probes.append(a) or (1.0, []))
    with caplog.at_level(logging.INFO, "jinaserve.runtime.torch"):
        model, dtype = auto_cpu_dtype(bert, device="cpu", requested="auto", flags=ZEN2_FLAGS, name="tiny")
    assert dtype == torch.float32 and model is bert and _param_dtype(model) == torch.float32
    assert probes == []  # no probe: the flags decide
    assert "dtype auto → float32" in caplog.text and "no native bf16" in caplog.text


def test_auto_through_the_loader_on_a_mocked_zen2(tiny_bert_path, monkeypatch, caplog):
    """The real load path (`Embedder`, dtype auto) on a CPU whose flags say no bf16 (mocked /proc/cpuinfo)."""
    from jinaserve import Embedder

    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": ZEN2_FLAGS)
    with caplog.at_level(logging.INFO, "jinaserve.runtime.torch"), \
            Embedder(f"tiny={tiny_bert_path}", device="cpu", dtype="auto", offline=True, threads=1) as emb:
        assert _param_dtype(emb._service.family.model) == torch.float32
        assert emb.encode("hello").dtype == np.float32
    assert "tiny: dtype auto → float32 (this CPU has no native bf16" in caplog.text


def _timed(monkeypatch, fp32_s: float, bf16_s: float) -> None:
    """Real probe passes (real hidden states, real cosines); only the measured seconds are replaced."""
    real = torch_runtime._probe_run

    def fake(module, batches, repeats):
        _, states = real(module, batches, 1)
        return (bf16_s if _param_dtype(module) == torch.bfloat16 else fp32_s), states

    monkeypatch.setattr(torch_runtime, "_probe_run", fake)


def test_auto_picks_bf16_when_flags_probe_and_cosine_allow(bert, monkeypatch, caplog):
    _timed(monkeypatch, fp32_s=1.0, bf16_s=0.4)
    with caplog.at_level(logging.INFO, "jinaserve.runtime.torch"):
        model, dtype = auto_cpu_dtype(bert, device="cpu", requested="auto", flags=SPR_FLAGS, name="tiny")
    assert dtype == torch.bfloat16 and _param_dtype(model) == torch.bfloat16
    assert _param_dtype(bert) == torch.float32  # converted on a copy
    assert "dtype auto → bfloat16 (CPU flag amx_bf16; probe 2.50× faster" in caplog.text


def test_auto_keeps_float32_when_the_probe_is_not_faster(bert, monkeypatch, caplog):
    _timed(monkeypatch, fp32_s=1.0, bf16_s=0.95)
    with caplog.at_level(logging.INFO, "jinaserve.runtime.torch"):
        model, dtype = auto_cpu_dtype(bert, device="cpu", requested="auto", flags=SPR_FLAGS, name="tiny")
    assert dtype == torch.float32 and model is bert
    assert "only 1.05× faster" in caplog.text


def test_auto_keeps_float32_below_the_cosine_floor(bert, monkeypatch, caplog):
    _timed(monkeypatch, fp32_s=1.0, bf16_s=0.2)
    monkeypatch.setattr(torch_runtime, "BF16_MIN_COSINE", 1.5)  # no bf16 output can reach it
    with caplog.at_level(logging.INFO, "jinaserve.runtime.torch"):
        model, dtype = auto_cpu_dtype(bert, device="cpu", requested="auto", flags=SPR_FLAGS, name="tiny")
    assert dtype == torch.float32 and model is bert
    assert "min cosine" in caplog.text and "< 1.5" in caplog.text


@pytest.mark.parametrize("kwargs", [{"requested": "float32"}, {"requested": "auto", "fp32_only": True},
                                    {"requested": "auto", "device": "cuda"}])
def test_explicit_dtypes_and_fp32_only_models_are_left_alone(bert, kwargs, monkeypatch):
    monkeypatch.setattr(torch_runtime, "_probe_run", lambda *a, **k: pytest.fail("probed"))
    model, dtype = auto_cpu_dtype(bert, **{"device": "cpu", **kwargs}, flags=SPR_FLAGS)
    assert model is bert and dtype == torch.float32


@pytest.mark.skipif(cpu.native_bf16() is None, reason="this CPU has no native bf16")
def test_auto_on_this_cpu_with_real_minilm(minilm_path):
    """This host has native bf16: the real probe on the real MiniLM; bf16 is chosen only if measured faster, and
    its vectors then stay within the floor of float32's (cosine ≥ 0.999, the probe's own floor)."""
    from jinaserve import Embedder

    texts = ["The cat sat on the mat.", "Dynamic batching shares forward passes.", "short", "a " * 60]
    with Embedder(f"m={minilm_path}", device="cpu", dtype="float32", offline=True) as ref:
        want = ref.encode(texts)
    with Embedder(f"m={minilm_path}", device="cpu", dtype="auto", offline=True) as auto:
        got = auto.encode(texts)
        chosen = _param_dtype(auto._service.family.model)
    assert chosen in (torch.float32, torch.bfloat16)
    assert float((want * got).sum(1).min()) >= 0.999
