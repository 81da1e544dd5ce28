"""The int8 / uint8 / binary / ubinary encodings of `jinaserve.outputs`, against references written out here."""

from __future__ import annotations

import base64

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jinaserve.outputs import encode_vector, quantize, to_base64

VECTORS = arrays(np.float32, st.integers(1, 70), elements=st.floats(-4, 4, width=32))


@settings(max_examples=200, deadline=None)
@given(VECTORS)
def test_quantize_against_reference(v):
    x = v.astype(np.float64)
    peak = np.abs(x).max()
    int8_ref = np.zeros_like(x) if peak == 0 else np.clip(np.rint(x * 127.0 / peak), -127, 127)
    q = quantize(v, "int8")
    assert q.dtype == np.int8 and q.shape == v.shape
    assert np.abs(q.astype(np.int64) - int8_ref).max() <= 1  # float32 vs float64 at exact .5 ties
    u = quantize(v, "uint8")
    assert u.dtype == np.uint8 and np.array_equal(u.astype(np.int64), q.astype(np.int64) + 128)
    bits = "".join("1" if e > 0 else "0" for e in x)
    bits += "0" * (-len(bits) % 8)  # the last byte is zero-padded
    ub_ref = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    assert quantize(v, "ubinary").tolist() == ub_ref
    assert quantize(v, "binary").tolist() == [b - 128 for b in ub_ref]
    assert encode_vector(v, "binary").tolist() == [float(b - 128) for b in ub_ref]  # the Jina encoding, unchanged
    assert np.frombuffer(base64.b64decode(to_base64(q)), np.int8).tolist() == q.tolist()
    assert np.array_equal(np.frombuffer(base64.b64decode(to_base64(v)), "<f4"), v)


def test_known_example():
    # docs/protocols.md: [0.3, -0.1, 0.2, 0.0, -0.5, 0.7, 0.1, -0.2] → bits 10100110
    v = np.array([0.3, -0.1, 0.2, 0.0, -0.5, 0.7, 0.1, -0.2], np.float32)
    assert quantize(v, "ubinary").tolist() == [166] and quantize(v, "binary").tolist() == [38]
    assert quantize(v, "int8").tolist() == [54, -18, 36, 0, -91, 127, 18, -36]
    assert quantize(np.zeros(5, np.float32), "int8").tolist() == [0] * 5
