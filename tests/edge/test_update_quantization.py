"""FedCompress's uint8 update quantisation: bounded error, 4x smaller payloads, strict decoding."""

from __future__ import annotations

import numpy as np
import pytest

from edge.update_quantization import (
    QPARAMS_SUFFIX,
    decoded_delta,
    dequantize_tensor,
    dequantize_update,
    quantize_tensor,
    quantize_update,
    update_tensors,
)
from edge.wire import FLOAT32_DELTA, UINT8_AFFINE_DELTA, PayloadRejected, UpdateMeta, decode_update, encode_update


def update_payload(delta: dict[str, np.ndarray], encoding: str) -> bytes:
    """A device's update blob for round 0 in `encoding`."""
    meta = UpdateMeta("f", "dev000", 0, 0, 10, 0.0, 0.0, "none", encoding=encoding)
    return encode_update(update_tensors(delta, encoding), meta)


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv/kernel": rng.normal(0, 0.05, (3, 3, 48, 96)).astype(np.float32),
            "conv/bias": rng.normal(0, 1e-3, (96,)).astype(np.float32),
            "dense/kernel": rng.uniform(-2, 7, (192, 10)).astype(np.float32),
            "constant": np.full((5,), -0.25, np.float32),
            "scalar": np.array(3.5, np.float32)}


@pytest.mark.parametrize("name", list(_delta()))
def test_round_trip_error_is_at_most_half_a_step(name):
    x = _delta()[name]
    q = quantize_tensor(x)
    back = dequantize_tensor(q)
    assert q.codes.dtype == np.uint8 and q.codes.shape == x.shape
    assert back.dtype == np.float32 and back.shape == x.shape
    bound = q.scale / 2 * (1 + 1e-5) + 1e-7 * float(np.max(np.abs(x)))
    assert float(np.max(np.abs(back - x))) <= bound
    if np.ptp(x) > 0:
        assert q.codes.min() == 0 and q.codes.max() == 255
        assert q.scale == pytest.approx(float(np.ptp(x)) / 255, rel=1e-6)
    else:
        np.testing.assert_array_equal(back, x)  # a constant tensor comes back exactly


def test_update_round_trip_through_the_wire_is_bounded_and_4x_smaller():
    delta = _delta()
    f32 = update_payload(delta, FLOAT32_DELTA)
    u8 = update_payload(delta, UINT8_AFFINE_DELTA)
    raw = sum(v.size for v in delta.values())
    assert len(f32) > 4 * raw
    assert 0.24 < len(u8) / len(f32) < 0.27
    wire, meta = decode_update(u8, encodings=(UINT8_AFFINE_DELTA,))
    got = decoded_delta(wire, meta.encoding)
    assert meta.encoding == UINT8_AFFINE_DELTA and set(got) == set(delta)
    for name, x in delta.items():
        step = float(np.ptp(x)) / 255
        assert got[name].dtype == np.float32
        assert float(np.max(np.abs(got[name] - x))) <= step / 2 * (1 + 1e-5) + 1e-7 * float(np.max(np.abs(x)))


def test_wire_tensors_are_uint8_codes_with_float32_qparams():
    wire = quantize_update(_delta())
    for name in _delta():
        assert wire[name].dtype == np.uint8
        assert wire[name + QPARAMS_SUFFIX].dtype == np.float32 and wire[name + QPARAMS_SUFFIX].shape == (2,)


def test_the_dmskd_aggregator_decoder_refuses_uint8_updates():
    blob = update_payload(_delta(), UINT8_AFFINE_DELTA)
    with pytest.raises(PayloadRejected, match="encoding 'uint8-affine-delta' not accepted"):
        decode_update(blob)


def test_missing_qparams_and_non_finite_input_are_named():
    wire = quantize_update({"w": np.ones(4, np.float32)})
    del wire["w" + QPARAMS_SUFFIX]
    with pytest.raises(ValueError, match="'w.qparams'"):
        dequantize_update(wire)
    with pytest.raises(PayloadRejected, match="'w.qparams'"):
        decoded_delta(wire, UINT8_AFFINE_DELTA)
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize_tensor(np.array([1.0, np.nan], np.float32))
