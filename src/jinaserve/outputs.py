"""Post-processing shared by every model: Matryoshka truncation → L2 normalisation → encoding.

Encodings (hosted API facts):
  float   – list of floats
  base64  – base64 of little-endian float32 bytes
  ubinary – np.packbits(v > 0), most significant bit first, values 0..255
  binary  – ubinary − 128 (offset binary int8), values −128..127

Integer quantisations for the Cohere and Voyage protocols (`quantize`; their published semantics, not their
unpublished calibration, see docs/protocols.md):
  int8    – round(v · 127 / max|v|) per vector (symmetric, batch-independent), values −127..127
  uint8   – int8 + 128, values 1..255
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np

EmbeddingType = Literal["float", "base64", "binary", "ubinary"]
EMBEDDING_TYPES: tuple[str, ...] = ("float", "base64", "binary", "ubinary")
QuantizedType = Literal["int8", "uint8", "binary", "ubinary"]
QUANTIZED_TYPES: tuple[str, ...] = ("int8", "uint8", "binary", "ubinary")


def truncate_and_normalize(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Cut the last axis to `dimensions` (if given), then L2-normalise along it (if asked).

    Works on one vector (d,), a batch (n, d) or per-token vectors (t, d). Zero vectors stay zero.
    """
    out = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None and dimensions < out.shape[-1]:
        out = out[..., :dimensions]
    if normalize:
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def encode_vector(vector: np.ndarray, embedding_type: str) -> list[float] | str | np.ndarray:
    """Encode one vector for the response body (orjson serialises numpy arrays natively)."""
    v = np.ascontiguousarray(vector, dtype=np.float32)
    if embedding_type == "float":
        return v
    if embedding_type == "base64":
        return to_base64(v)
    if embedding_type in ("binary", "ubinary"):
        return quantize(v, embedding_type).astype(np.float32)
    raise ValueError(f"unknown embedding type {embedding_type!r}")


def quantize(vector: np.ndarray, kind: str) -> np.ndarray:
    """One vector as integers: int8 / binary → np.int8, uint8 / ubinary → np.uint8 (packed bits for the
    binary kinds: 8 dimensions per byte, most significant bit first, zero-padded to a whole byte)."""
    v = np.asarray(vector, dtype=np.float32)
    if kind in ("int8", "uint8"):
        peak = float(np.max(np.abs(v))) if v.size else 0.0
        scale = 127.0 / peak if peak > 0 and np.isfinite(peak) else 0.0
        q = np.clip(np.rint(v.astype(np.float64) * scale), -127, 127).astype(np.int16)  # float64: tiny peaks
        return (q + 128).astype(np.uint8) if kind == "uint8" else q.astype(np.int8)
    if kind in ("binary", "ubinary"):
        packed = np.packbits(v > 0)
        return (packed.astype(np.int16) - 128).astype(np.int8) if kind == "binary" else packed
    raise ValueError(f"unknown quantized type {kind!r}")


def to_base64(array: np.ndarray) -> str:
    """base64 of an array's raw bytes: float vectors as little-endian float32, integer ones byte by byte."""
    a = np.asarray(array)
    if a.dtype.kind == "f":
        a = a.astype("<f4", copy=False)
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def decode_base64(value: str) -> np.ndarray:
    """Inverse of the base64 encoding (used by tests, benchmarks and clients)."""
    return np.frombuffer(base64.b64decode(value), dtype="<f4")


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows of `a` and rows of `b` (1-D inputs are treated as one row)."""
    a2 = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b2 = np.atleast_2d(np.asarray(b, dtype=np.float32))
    a2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), 1e-12)
    b2 = b2 / np.maximum(np.linalg.norm(b2, axis=-1, keepdims=True), 1e-12)
    sims = a2 @ b2.T
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return sims[0, 0]
    if np.ndim(a) == 1:
        return sims[0]
    if np.ndim(b) == 1:
        return sims[:, 0]
    return sims
