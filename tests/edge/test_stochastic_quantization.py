"""b-bit stochastic quantisation of updates: unbiased, within its rounding bound, packed, refused when malformed."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from edge.stochastic_quantization import (
    CODES,
    QPARAMS,
    dequantize,
    encoding_for_bits,
    packed_length,
    quantize,
    rounding_bound,
)
from edge.wire import FLOAT32_DELTA, PayloadRejected


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense_0/kernel": rng.normal(0, 0.1, (7, 5)).astype(np.float32),
            "dense_0/bias": rng.normal(0, 0.1, 6).astype(np.float32),  # 41 values: the last byte is padded
            "empty": np.zeros((0, 3), np.float32)}


def _template(delta: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in delta.items()}


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantisation_is_unbiased_and_every_draw_is_within_its_rounding_bound(bits):
    delta, rng = _delta(), np.random.default_rng(1)
    total = {k: np.zeros(v.shape) for k, v in delta.items()}
    draws = 4000
    for _ in range(draws):
        wire = quantize(delta, bits, rng)
        out = dequantize(wire, bits, _template(delta))
        err = math.sqrt(sum(float(np.sum((out[k] - delta[k]) ** 2.0)) for k in delta))
        assert err <= rounding_bound(wire, _template(delta)) + 1e-6
        for k in delta:
            total[k] += out[k]
    for k, v in delta.items():
        if v.size:
            scale = (v.max() - v.min()) / ((1 << bits) - 1)
            # the mean of `draws` draws, each within one step: 6 standard errors of a uniform step
            assert np.max(np.abs(total[k] / draws - v)) < 6 * scale / math.sqrt(draws) + 1e-6


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_codes_are_packed_to_bits_per_value(bits):
    delta = _delta()
    wire = quantize(delta, bits, np.random.default_rng(0))
    values = sum(v.size for v in delta.values())
    assert wire[CODES].dtype == np.uint8 and wire[CODES].size == packed_length(values, bits) == -(-values * bits // 8)
    assert wire[QPARAMS].shape == (3, 2) and wire[QPARAMS].dtype == np.float32


def test_a_constant_tensor_round_trips_exactly():
    delta = {"w": np.full((4, 4), 0.25, np.float32)}
    out = dequantize(quantize(delta, 2, np.random.default_rng(0)), 2, {"w": (4, 4)})
    assert np.array_equal(out["w"], delta["w"])


def test_the_same_generator_state_gives_the_same_codes():
    a = quantize(_delta(), 4, np.random.default_rng(5))
    b = quantize(_delta(), 4, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _wire(bits: int = 4) -> dict[str, np.ndarray]:
    return quantize(_delta(), bits, np.random.default_rng(0))


def _with(wire: dict[str, np.ndarray], **changes: np.ndarray) -> dict[str, np.ndarray]:
    return {**wire, **changes}


def _qparams(scale: float) -> np.ndarray:
    q = _wire()[QPARAMS].copy()
    q[0, 0] = scale
    return q


@pytest.mark.parametrize("name, wire, bits, words", [
    ("wrong bit width", _wire(4), 8, "wrong bit width"),
    ("codes of another student", _with(_wire(), codes=_wire()[CODES][:-1]), 4, "bytes of codes"),
    ("a zero scale", _with(_wire(), qparams=_qparams(0.0)), 4, "scale must be positive"),
    ("a NaN scale", _with(_wire(), qparams=_qparams(float("nan"))), 4, "positive and finite"),
    ("a negative scale", _with(_wire(), qparams=_qparams(-1.0)), 4, "positive"),
    ("qparams of the wrong shape", _with(_wire(), qparams=np.zeros((2, 2), np.float32)), 4, "shape (3, 2)"),
    ("codes of the wrong dtype", _with(_wire(), codes=_wire()[CODES].astype(np.float32)), 4, "uint8"),
    ("an extra tensor", _with(_wire(), extra=np.zeros(1, np.float32)), 4, "exactly the tensors"),
    ("padding bits set", _with(_wire(2), codes=_wire(2)[CODES] | np.uint8(0xC0)), 2, "padding bits"),
    ("a value beyond float32", _with(_wire(), qparams=_qparams(3e38)), 4, "beyond float32"),
])
def test_a_malformed_quantised_update_is_refused_naming_why(name, wire, bits, words):
    with pytest.raises(PayloadRejected, match=re.escape(words)):
        dequantize(wire, bits, _template(_delta()))


def test_bit_widths_name_their_encodings_and_32_is_float32():
    assert encoding_for_bits(32) == FLOAT32_DELTA
    assert {encoding_for_bits(b) for b in (8, 4, 2)} == {"sq8-delta", "sq4-delta", "sq2-delta"}
    with pytest.raises(ValueError, match="--update-bits"):
        encoding_for_bits(16)
