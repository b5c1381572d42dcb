"""The global model's downlink step: a device rebuilds exactly the aggregator's model, unbiasedly, or refuses."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model_step import apply_step, quantised_step
from edge.stochastic_quantization import CODES, QPARAMS
from edge.wire import (
    FLOAT32_WEIGHTS,
    WRONG_ENCODING,
    WRONG_SHAPE,
    ModelStepMeta,
    PayloadRejected,
    decode_model_step,
    encode_model_step,
)

OLD = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4, np.float32)}


def _new(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in OLD.items()}


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_a_device_rebuilds_the_aggregators_model_bit_for_bit_through_the_wire(bits: int) -> None:
    wire, rebuilt = quantised_step(OLD, _new(), bits, np.random.default_rng(1))
    blob = encode_model_step(wire, ModelStepMeta("f", 5, 5, 4, f"sq{bits}-delta"))
    tensors, meta = decode_model_step(blob)
    on_device = apply_step(OLD, tensors, bits)
    assert (meta.version, meta.base_version, meta.round) == (5, 4, 5)
    assert all(on_device[k].dtype == np.float32 and on_device[k].tobytes() == rebuilt[k].tobytes() for k in OLD)


def test_the_rebuilt_model_is_the_new_one_in_expectation_and_within_one_step_of_it() -> None:
    new = _new()
    draws = [quantised_step(OLD, new, 2, np.random.default_rng(s)) for s in range(400)]
    mean = {k: np.mean([d[1][k] for d in draws], axis=0) for k in OLD}
    for k in OLD:
        scale = max(float(d[0][QPARAMS][sorted(OLD).index(k), 0]) for d in draws)
        assert np.max(np.abs(mean[k] - new[k])) < 0.15 * scale  # unbiased: 400 draws average out
        assert all(np.max(np.abs(d[1][k] - new[k])) <= scale * (1 + 1e-5) for d in draws)


def test_8_bits_carry_a_tenth_of_the_step_error_of_2_bits() -> None:
    new = _new()
    err = {b: np.sqrt(sum(np.sum((quantised_step(OLD, new, b, np.random.default_rng(3))[1][k] - new[k]) ** 2)
                          for k in OLD)) for b in (8, 2)}
    assert err[8] < 0.1 * err[2]


def test_a_step_for_another_student_is_refused_as_the_wrong_shape() -> None:
    wire, _ = quantised_step(OLD, _new(), 8, np.random.default_rng(0))
    other = {"w": np.zeros((3, 5), np.float32), "b": np.zeros(4, np.float32)}
    with pytest.raises(PayloadRejected) as exc:
        apply_step(other, wire, 8)
    assert exc.value.reason == WRONG_SHAPE


@pytest.mark.parametrize("scale", [0.0, np.nan, -1.0])
def test_a_step_with_a_scale_that_is_not_positive_and_finite_is_refused(scale: float) -> None:
    wire, _ = quantised_step(OLD, _new(), 8, np.random.default_rng(0))
    bad = {CODES: wire[CODES], QPARAMS: wire[QPARAMS].copy()}
    bad[QPARAMS][0, 0] = scale
    with pytest.raises(PayloadRejected, match="scale must be positive and finite"):
        apply_step(OLD, bad, 8)


def test_a_step_that_takes_the_held_model_beyond_float32_is_refused() -> None:
    wire, _ = quantised_step(OLD, _new(), 8, np.random.default_rng(0))
    near_max = {k: np.full(v.shape, 3e38, np.float32) for k, v in OLD.items()}
    push = {CODES: np.zeros_like(wire[CODES]), QPARAMS: np.array([[1.0, 1e38], [1.0, 1e38]], np.float32)}
    with pytest.raises(PayloadRejected, match=r"takes tensors \['b', 'w'\] beyond float32's range"):
        apply_step(near_max, push, 8)


def test_a_step_blob_in_a_float32_encoding_is_refused_with_wrong_encoding() -> None:
    blob = encode_model_step(dict(OLD), ModelStepMeta("f", 1, 1, 0, FLOAT32_WEIGHTS))
    with pytest.raises(PayloadRejected) as exc:
        decode_model_step(blob)
    assert exc.value.reason == WRONG_ENCODING
