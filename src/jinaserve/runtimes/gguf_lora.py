"""jina-embeddings-v3 task LoRAs for llama.cpp: fold the token-type LoRA into the word-embedding LoRA.

llama.cpp's converter writes one adapter GGUF per v3 task (`lora-<task>-<model>.gguf`), including the
LoRA of `token_type_embeddings` (`token_types.weight.lora_{a,b}`). llama.cpp's BERT graph (shared by
`jina-bert-v3`) adds row 0 of the base `token_types.weight` as is and never applies that LoRA, while
the torch model does (`W_type + s·A·B`). Every token therefore misses the same constant vector
`d = s · (A_type·B_type)[0]` before the embedding LayerNorm, and the task vectors drift from torch's.

llama.cpp does apply the word-embedding LoRA (`token_embd.weight`: `delta[t] = s' · B · A[t]`), and `d`
is the same for every token, so it is folded in exactly by one extra rank: A' = [A | 1],
B' = [B·s/s' | d/s'], where s and s' are llama.cpp's scales for rank r and r+1 (alpha / rank, or 1
without alpha). The token-type pair is dropped from the rewritten file, so nothing is counted twice
if a later llama.cpp starts applying it. Files without a token-type LoRA are used unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.runtime.llamacpp")

_TYPE_A, _TYPE_B = "token_types.weight.lora_a", "token_types.weight.lora_b"
_EMB_A, _EMB_B = "token_embd.weight.lora_a", "token_embd.weight.lora_b"


def _scale(alpha: float, rank: int) -> float:
    """llama.cpp's `llama_adapter_lora_weight::get_scale` with adapter scale 1."""
    return alpha / rank if alpha else 1.0


def fold_token_type_lora(src: Path, dst: Path) -> bool:
    """Write `src` (a llama.cpp LoRA GGUF) to `dst` with its token-type LoRA folded into the word-embedding
    LoRA. Returns False (and writes nothing) when `src` has no token-type LoRA."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    tensors = {t.name: t for t in reader.tensors}
    if _TYPE_A not in tensors:
        return False
    if _TYPE_B not in tensors or _EMB_A not in tensors or _EMB_B not in tensors:
        raise ModelLoadError(f"{src.name}: a token-type LoRA without its pair or without a word-embedding LoRA; "
                             f"cannot fold it for llama.cpp")

    def floats(name: str) -> np.ndarray:
        t = tensors[name]
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            raise ModelLoadError(f"{src.name}: {name} is {t.tensor_type.name}; only F32/F16 LoRA tensors are folded")
        return np.asarray(t.data, dtype=np.float32)

    alpha_field = reader.fields.get("adapter.lora.alpha")
    alpha = float(alpha_field.contents()) if alpha_field is not None else 0.0
    # numpy layouts (as the converter writes them): token_types lora_b (n_types, r) = torch A, lora_a (r, dim) =
    # torch B; token_embd lora_a (vocab, r), lora_b (dim, r). llama.cpp's rank = lora_b's ggml ne[0] = numpy dim -1.
    t_a, t_b = floats(_TYPE_A), floats(_TYPE_B)
    d = _scale(alpha, t_b.shape[-1]) * (t_b[0] @ t_a)  # the row-0 delta torch adds to every token: (dim,)
    e_a, e_b = floats(_EMB_A), floats(_EMB_B)
    rank = e_b.shape[-1]
    s, s1 = _scale(alpha, rank), _scale(alpha, rank + 1)
    new_a = np.concatenate([e_a, np.ones((e_a.shape[0], 1), np.float32)], axis=1)
    new_b = np.concatenate([e_b * (s / s1), (d / s1)[:, None]], axis=1).astype(np.float32)

    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        if t.name in (_TYPE_A, _TYPE_B):
            continue
        if t.name == _EMB_A:
            writer.add_tensor(t.name, new_a)
        elif t.name == _EMB_B:
            writer.add_tensor(t.name, new_b)
        else:
            writer.add_tensor(t.name, np.asarray(t.data), raw_shape=tuple(t.data.shape), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.debug("%s: token-type LoRA folded into the word-embedding LoRA (|d| = %.4g)", src.name,
              float(np.linalg.norm(d)))
    return True


__all__ = ["fold_token_type_lora"]
