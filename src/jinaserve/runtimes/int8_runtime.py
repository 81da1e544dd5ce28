"""`--quantize int8`: the backbone as an ONNX Runtime graph with dynamic int8 weights (a `Backbone`).

Chosen by measurement (`benchmarks/int8_quality.py`, figures in docs/performance.md): on all-MiniLM-L6-v2
(real weights), torch's dynamic int8 (`torch.ao.quantization.quantize_dynamic`, deprecated upstream in
favour of torchao) kept a mean cosine to float32 of only ~0.91 with every Linear quantised and ~0.98 even
with the FFN down-projections left in float; ONNX Runtime's dynamic int8 (per-channel weights, asymmetric
uint8 activations) keeps ~0.99, at the same or better speed.

How: the loaded torch backbone is exported once to ONNX (`torch.onnx.export`, TorchScript exporter, dynamic
batch and sequence axes) with transformers' *eager* attention (the SDPA path traces into a graph that ONNX
Runtime runs ~2.4x slower on 254-token batches: measured on MiniLM, figures in docs/performance.md); encoders
of the BERT line (BERT, RoBERTa, XLM-R, ...) then get ONNX Runtime's transformer fusions
(`onnxruntime.transformers.optimizer`: Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu),
kept only when the fused graph equals the module's output on a padded sample; the graph is quantised with
`onnxruntime.quantization.quantize_dynamic` (int8 per-channel weights) and cached
(`<cache>/int8/<key>/model.onnx`, key = the checkpoint's files and sizes and the graph recipe); later loads
reuse the file. The FFN down-projections (the Linear after the MLP's activation: `output.dense` of BERT-style
layers, `down_proj`, `fc2`, `wo`) stay in float: their inputs carry the outlier activations that dominate
int8 error (measured on MiniLM: quantising them alone drops the mean cosine from 0.99 to 0.93).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .backbone import Backbone

log = logging.getLogger("jinaserve.runtime.int8")

# Bumped when the exported graph changes, so a cached graph from an older recipe is rebuilt.
GRAPH_RECIPE = "eager-fused-1"
# model_type values whose encoder layers ONNX Runtime's "bert" optimizer fuses (checked per graph, see _fuse).
FUSABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
# The fused float graph must equal the module on the sample up to this share of the output's largest value.
FUSION_TOLERANCE = 1e-3

# Torch module-name endings of FFN down-projections, kept in float (see the module docstring).
FLOAT_LINEARS = re.compile(r"(^|\.)(?<!attention\.)output\.dense$|(^|\.)(down_proj|fc2|wo|dense_4h_to_h)$")


def require_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (the exporter and the quantiser need it)
        import onnxruntime
        import onnxruntime.quantization
    except ImportError as exc:
        raise ModelLoadError("--quantize int8 needs ONNX Runtime: pip install 'jinaserve[int8]' "
                             "(onnxruntime, onnx)") from exc
    return onnxruntime


def float_linears(module: Any) -> list[str]:
    """Names of the Linear layers kept in float."""
    import torch

    return [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear) and FLOAT_LINEARS.search(n)]


def checkpoint_key(folder: Path, extra: str = "") -> str:
    """A key for the cached int8 graph: the checkpoint's file names, sizes and times, plus `extra`."""
    h = hashlib.sha256(extra.encode())
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


class _HiddenStates:
    """Wraps a transformers backbone so the exported graph has one output: the last hidden state."""

    @staticmethod
    def wrap(module: Any) -> Any:
        import torch

        from .torch_runtime import TorchBackbone

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = module

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return TorchBackbone(self.m).encode(input_ids, attention_mask)

        return Wrapper()


@contextlib.contextmanager
def _eager_attention(module: Any) -> Iterator[None]:
    """Run the block with transformers' eager attention (a plain MatMul/Softmax graph), then restore."""
    config = getattr(module, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(module, "set_attn_implementation", None)
    if before in (None, "eager") or setter is None:
        yield
        return
    try:
        setter("eager")
    except (ValueError, TypeError, AttributeError) as exc:  # a model that can't switch exports as it is
        log.info("int8 export keeps %s attention (%s)", before, exc)
        yield
        return
    try:
        yield
    finally:
        setter(before)


def _sample(module: Any) -> tuple[Any, Any]:
    """A padded sample batch, so the traced graph keeps the attention-mask path (an all-ones mask lets
    transformers drop the mask, and the exported graph would then ignore padding)."""
    import torch

    vocab = int(getattr(getattr(module, "config", None), "vocab_size", 0) or 1000)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, max(6, min(vocab, 30000)), (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return ids, mask


def _fuse(fp32: Path, out: Path, module: Any, wrapper: Any, sample: tuple[Any, Any]) -> Path | None:
    """ONNX Runtime's transformer fusions on the float graph, written to `out`; None (unfused graph kept) where the
    model type has none, the optimizer fails, or the fused graph's output differs from the module's."""
    import torch

    config = getattr(module, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FUSABLE_MODEL_TYPES:
        return None
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.use_raw_attention_mask(True)  # the 2-D mask as given: no assumption about the padding side
    # The optimizer's symbolic shape inference copies the model several times (XLM-R large-like, 1.2 GB of
    # weights: peak 10.9 GB with it, 6.7 GB without); the fusions found are the same without it.
    options.enable_shape_inference = False
    try:
        fused = optimize_model(str(fp32), model_type="bert", num_heads=int(config.num_attention_heads),
                               hidden_size=int(config.hidden_size), optimization_options=options)
        out.parent.mkdir(parents=True, exist_ok=True)
        fused.save_model_to_file(str(out), use_external_data_format=True)
        stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        del fused  # the optimizer's in-memory copy of the weights (GBs for a large model) before the session's
        ort = require_onnxruntime()
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        ids, mask = sample
        (got,) = session.run(["hidden"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        del session
        with torch.inference_mode():
            want = wrapper(ids, mask).float().numpy()
    except Exception as exc:  # any optimizer failure leaves the unfused graph, which is correct
        log.warning("int8: ONNX Runtime fusions skipped for %s (%s: %s)", model_type, type(exc).__name__, exc)
        return None
    rows = mask.numpy().astype(bool)  # compare real tokens only (padded positions are undefined)
    err = float(np.abs(got[rows] - want[rows]).max()) / max(float(np.abs(want[rows]).max()), 1e-6)
    if err > FUSION_TOLERANCE:
        log.warning("int8: ONNX Runtime fusions skipped for %s: the fused graph differs from the model by %.2g "
                    "(relative)", model_type, err)
        return None
    log.info("int8: fused %s (max relative difference %.1g)", stats, err)
    return out


def export_int8(module: Any, target: Path) -> Path:
    """Export `module` (float32) to ONNX and write its dynamic-int8 version as `target` (a `model.onnx` in its own
    folder, with its external weights file beside it); the folder appears whole or not at all."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = target.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    keep = float_linears(module)
    with tempfile.TemporaryDirectory(prefix="export-", dir=folder.parent) as tmp:
        fp32 = Path(tmp) / "fp32" / "model.onnx"
        fp32.parent.mkdir()
        sample = _sample(module)
        wrapper = _HiddenStates.wrap(module).eval()
        with _eager_attention(module):
            try:
                torch.onnx.export(wrapper, sample, str(fp32), input_names=["input_ids", "attention_mask"],
                                  output_names=["hidden"], opset_version=17, dynamo=False,
                                  dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                                "attention_mask": {0: "batch", 1: "tokens"},
                                                "hidden": {0: "batch", 1: "tokens"}})
            finally:
                module.train(was_training)  # the exporter leaves the module in training mode (dropout on)
        source = _fuse(fp32, Path(tmp) / "fused" / "model.onnx", module, wrapper, sample) or fp32
        graph = onnx.load(str(source), load_external_data=False).graph
        # ONNX node names are the module scopes joined by "/" (ModuleList items keep "layer.0"): compare with "."
        exclude = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")
                   and any(f".{k}." in n.name.replace("/", ".") for k in keep)]
        out = Path(tmp) / "int8"
        out.mkdir()
        # Fused ops (com.microsoft domain) have no ONNX shape inference: their outputs are float tensors.
        quantize_dynamic(str(source), str(out / target.name), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=exclude, use_external_data_format=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        try:
            os.replace(out, folder)
        except OSError:  # another process built it first
            if not target.is_file():
                raise
    log.info("int8 graph written to %s (%d MatMuls kept in float: FFN down-projections)", folder, len(exclude))
    return target


class OnnxInt8Backbone(Backbone):
    """The runtime interface over an ONNX Runtime session of the int8 graph."""

    runtime = "onnxruntime-int8"
    capabilities = frozenset()

    def __init__(self, path: Path, *, hidden_size: int, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        options.intra_op_num_threads = int(threads or cores)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Worker threads sleep between runs instead of spinning: the same reason jinaserve sets
        # OMP_WAIT_POLICY=PASSIVE for torch (runtimes/threads.py): spinning threads take the cores the batcher,
        # the event loop and other processes need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.hidden_size = hidden_size

    def encode(self, input_ids: Any, attention_mask: Any | None) -> Any:
        import torch

        ids = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        mask = np.ones_like(ids) if attention_mask is None else \
            attention_mask.detach().cpu().numpy().astype(np.int64, copy=False)
        (hidden,) = self.session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})
        return torch.from_numpy(hidden)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def int8_backbone(module: Any, *, folder: Path, cache_dir: str | None, threads: int | None,
                  name: str = "model") -> OnnxInt8Backbone:
    """The int8 backbone of `module` (loaded from `folder`, float32, CPU), built once and cached."""
    require_onnxruntime()
    import torch

    if next(module.parameters()).dtype != torch.float32:
        raise ModelLoadError(f"{name}: --quantize int8 starts from float32 weights; use --dtype float32 (or auto)")
    root = Path(cache_dir) if cache_dir else Path(_user_cache())
    params = sum(p.numel() for p in module.parameters())
    key = checkpoint_key(folder, f"{GRAPH_RECIPE}:{type(module).__name__}:{params}")
    target = root / "int8" / key / "model.onnx"
    if not target.is_file():
        started = time.perf_counter()
        export_int8(module, target)
        log.info("%s: int8 graph built in %.1f s", name, time.perf_counter() - started)
    hidden = int(getattr(getattr(module, "config", None), "hidden_size", 0) or 0)
    backbone = OnnxInt8Backbone(target, hidden_size=hidden, threads=threads)
    log.info("%s: running on ONNX Runtime int8 (%s)", name, target.parent)
    return backbone


def _user_cache() -> str:
    import platformdirs

    return platformdirs.user_cache_dir("jinaserve")


__all__ = ["FLOAT_LINEARS", "FUSABLE_MODEL_TYPES", "GRAPH_RECIPE", "OnnxInt8Backbone",
           "export_int8", "float_linears", "int8_backbone"]
