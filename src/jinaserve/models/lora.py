"""Task adapters published as PEFT LoRA folders (`adapters/{task}/adapter_config.json` +
`adapter_model.safetensors`), applied in one of two ways:

* ``merged``: at load time each task's delta `W + (B @ A) * alpha / r` is merged into its own copy of
  every adapted weight. Switching task between batches swaps the weight tensors (no arithmetic), and
  the forward pass is exactly the base model's cost. Memory: one copy of the adapted weights per task.
* ``lora``: PEFT injects the LoRA layers once; every adapted Linear runs two extra low-rank matmuls
  per forward, and switching task is `set_adapter`. Memory: base weights + the small A/B matrices.

Which one a model uses is a catalog fact (`extra["adapter_mode"]`), chosen from measurements (see
`benchmarks/lora_vs_merged.py` and docs/models/jina-text.md): `merged` (fastest), `lora` (smallest), or `auto`:
merged when the extra copies fit in half of the free memory of the device, else runtime LoRA.

The batcher never mixes items of different groups (tasks) in one batch, so a batch has one task and
the worker thread switches before running it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.models.lora")

ADAPTER_MODES = ("merged", "lora", "auto")
# `auto` merges when the extra per-task copies take at most this share of the free memory.
AUTO_MERGE_MAX_SHARE = 0.5


def adapter_folder(root: Path, name: str) -> Path:
    folder = root / "adapters" / name
    if not (folder / "adapter_config.json").is_file():
        found = sorted(p.parent.name for p in (root / "adapters").glob("*/adapter_config.json"))
        raise ModelLoadError(f"{folder} has no adapter_config.json: the PEFT adapter of task {name!r} is missing "
                             f"(adapters found: {found or 'none'}). Download the whole repo again, or serve a "
                             f"per-task merged checkpoint under its own catalog id.")
    return folder


_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])(?:\.default)?\.weight$")


def read_lora(folder: Path) -> tuple[dict, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(adapter config, {module name: (A, B)}) from one PEFT LoRA folder; any tensor that is not a LoRA
    factor `<module>.lora_A.weight` / `lora_B.weight` fails the load (nothing is skipped silently)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"{folder}: only LoRA adapters are supported, got {config.get('peft_type')!r}")
    if config.get("use_dora") or config.get("use_rslora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelLoadError(f"{folder}: DoRA / rsLoRA / per-module rank or alpha patterns are not supported")
    weights_file = folder / "adapter_model.safetensors"
    if weights_file.is_file():
        from safetensors.torch import load_file

        raw = load_file(str(weights_file))
    elif (folder / "adapter_model.bin").is_file():
        raw = torch.load(str(folder / "adapter_model.bin"), map_location="cpu", weights_only=True)
    else:
        raise ModelLoadError(f"{folder} has no adapter_model.safetensors (the adapter's weights)")
    unknown = sorted(k for k in raw if _LORA_KEY.match(k.removeprefix("base_model.model.")) is None)
    if unknown:
        raise ModelLoadError(f"{folder}: {len(unknown)} adapter tensors are not LoRA factors "
                             f"('<module>.lora_A.weight' / 'lora_B.weight'): {unknown[:8]}")
    pairs: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in raw.items():
        m = _LORA_KEY.match(key.removeprefix("base_model.model."))
        assert m is not None
        pairs[m["module"]][m["part"]] = value
    out = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise ModelLoadError(f"{folder}: LoRA pair of {module!r} is incomplete")
        out[module] = (ab["A"], ab["B"])
    if not out:
        raise ModelLoadError(f"{folder}: the adapter holds no LoRA weights")
    return config, out


def lora_scaling(config: Mapping) -> float:
    return float(config["lora_alpha"]) / float(config["r"])


def _find_linear(modules: Mapping[str, nn.Module], name: str) -> nn.Linear | None:
    for candidate in (name, name.removeprefix("model.")):
        mod = modules.get(candidate)
        if isinstance(mod, nn.Linear):
            return mod
    return None


def check_targets(model: nn.Module, folders: Mapping[str, Path]) -> None:
    """Every adapter module must be a Linear of the model: an adapter whose modules map to nothing would
    otherwise be dropped silently (wrong vectors). Raises with the names that do not map."""
    modules = dict(model.named_modules())
    for task, folder in folders.items():
        _, pairs = read_lora(folder)
        unmapped = sorted(name for name in pairs if _find_linear(modules, name) is None)
        if unmapped:
            raise ModelLoadError(f"{folder}: the {task!r} adapter targets {len(unmapped)} modules that are not "
                                 f"Linear layers of the model: {unmapped[:8]}. The adapter does not belong to this "
                                 f"checkpoint; nothing was loaded.")


def _resolve(model: nn.Module, name: str) -> nn.Linear:
    mod = _find_linear(dict(model.named_modules()), name)
    if mod is None:
        raise ModelLoadError(f"adapter targets module {name!r}, which the model does not have")
    return mod


class MergedAdapters:
    """Per-task merged copies of the adapted weights; `activate(task)` swaps them in."""

    mode = "merged"

    def __init__(self, model: nn.Module, folders: Mapping[str, Path], *, keep_base: bool = False) -> None:
        self.model = model
        self.modules: dict[str, nn.Linear] = {}
        self.weights: dict[Hashable, dict[str, torch.Tensor]] = {}
        base: dict[str, torch.Tensor] = {}
        for task, folder in folders.items():
            config, pairs = read_lora(folder)
            scale = lora_scaling(config)
            merged: dict[str, torch.Tensor] = {}
            for name, (a, b) in pairs.items():
                linear = self.modules.get(name) or _resolve(model, name)
                self.modules[name] = linear
                w = base.setdefault(name, linear.weight.detach())
                delta = (b.to(torch.float32) @ a.to(torch.float32)) * scale
                merged[name] = (w.to(torch.float32) + delta.to(w.device)).to(w.dtype)
            self.weights[task] = merged
        if keep_base:
            self.weights[None] = base
        self.active: Hashable = None if keep_base else "__unset__"
        for name in self.modules:
            missing = [t for t, ws in self.weights.items() if name not in ws]
            if missing:  # a module adapted by one task only: the others use the base weight
                for t in missing:
                    self.weights[t][name] = base[name]

    def activate(self, task: Hashable) -> None:
        if task == self.active:
            return
        if task not in self.weights:
            raise KeyError(f"no adapter {task!r}; loaded: {sorted(map(str, self.weights))}")
        for name, w in self.weights[task].items():
            self.modules[name].weight = nn.Parameter(w, requires_grad=False)
        self.active = task

    @property
    def extra_bytes(self) -> int:
        return sum(w.numel() * w.element_size() for ws in self.weights.values() for w in ws.values())


class PeftAdapters:
    """PEFT LoRA layers injected once; `activate(task)` is `set_adapter` (None = adapters disabled)."""

    mode = "lora"

    def __init__(self, model: nn.Module, folders: Mapping[str, Path]) -> None:
        from peft import PeftModel

        items = list(folders.items())
        if not items:
            raise ValueError("no adapters to load")
        first_task, first_folder = items[0]
        self.peft = PeftModel.from_pretrained(model, str(first_folder), adapter_name=str(first_task),
                                              is_trainable=False)
        for task, folder in items[1:]:
            self.peft.load_adapter(str(folder), adapter_name=str(task), is_trainable=False)
        self.peft.eval()
        self.model = model  # the LoRA layers live inside `model` now
        self.active: Hashable = "__unset__"
        self.tasks = {t for t, _ in items}

    def activate(self, task: Hashable) -> None:
        if task == self.active:
            return
        if task is None:
            self.peft.base_model.disable_adapter_layers()
        else:
            if task not in self.tasks:
                raise KeyError(f"no adapter {task!r}; loaded: {sorted(map(str, self.tasks))}")
            self.peft.base_model.enable_adapter_layers()
            self.peft.set_adapter(str(task))
        self.active = task


def merged_extra_bytes(model: nn.Module, folders: Mapping[str, Path], keep_base: bool = False) -> int:
    """Memory the merged mode adds: (tasks - 1, or tasks when the base is kept) copies of the adapted
    weights, from the adapters' target lists (no tensors are read)."""
    targets: set[str] = set()
    for folder in folders.values():
        cfg = json.loads((folder / "adapter_config.json").read_text())
        mods = cfg.get("target_modules") or []
        targets.update([mods] if isinstance(mods, str) else mods)
    adapted = sum(m.weight.numel() * m.weight.element_size() for name, m in model.named_modules()
                  if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets)
    return adapted * (len(folders) - (0 if keep_base else 1))


def free_memory_bytes(device: str) -> int | None:
    """Free memory of the device the weights live on (None when unknown)."""
    try:
        if device.startswith("cuda"):
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def choose_mode(model: nn.Module, folders: Mapping[str, Path], device: str, keep_base: bool = False) -> str:
    extra = merged_extra_bytes(model, folders, keep_base)
    free = free_memory_bytes(device)
    mode = "merged" if free is None or extra <= AUTO_MERGE_MAX_SHARE * free else "lora"
    log.info("adapter mode auto → %s (merged would add %.0f MiB; %s MiB free on %s)", mode, extra / 2**20,
             "?" if free is None else f"{free / 2**20:.0f}", device)
    return mode


def load_adapters(model: nn.Module, root: Path, names: list[str], mode: str,
                  *, keep_base: bool = False, device: str = "cpu") -> MergedAdapters | PeftAdapters:
    if mode not in ADAPTER_MODES:
        raise ValueError(f"adapter mode {mode!r} unknown; use one of {ADAPTER_MODES}")
    folders = {n: adapter_folder(root, n) for n in names}
    check_targets(model, folders)  # both modes: PEFT would only warn about modules it cannot find
    if mode == "auto":
        mode = choose_mode(model, folders, device, keep_base)
    if mode == "merged":
        adapters: MergedAdapters | PeftAdapters = MergedAdapters(model, folders, keep_base=keep_base)
        log.info("merged %d task adapters into per-task weights (%.1f MiB)", len(names),
                 adapters.extra_bytes / 2**20)
    else:
        adapters = PeftAdapters(model, folders)
        log.info("loaded %d task adapters as runtime LoRA", len(names))
    return adapters
