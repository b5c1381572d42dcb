"""Unbiased b-bit update quantisation (b = 8, 4 or 2): the main path's update encoding, numpy only.

Each tensor x gets a zero point z = min(x) (the value code 0 stands for) and a scale
s = (max(x) - min(x)) / L, L = 2^b - 1. A value goes to one of its two neighbouring levels, the
upper one with probability equal to its distance from the lower one in steps (stochastic
rounding), so z + s * code is x in expectation and never further than s from it: over a tensor of
n values the codes stray at most s * sqrt(n) from x in L2 (`rounding_bound`).

On the wire (edge.wire encodings SQ8_DELTA, SQ4_DELTA, SQ2_DELTA) an update is two tensors: "codes",
every tensor's codes in name order packed 8 / b to a byte, low bits first, the last byte padded
with zero bits; and "qparams", float32 of shape (T, 2), each tensor's [scale, zero point] in name
order. The tensor names and shapes are the student's (the aggregator's template), so b bits per
value plus 8 bytes per tensor is all an update carries.
"""

from __future__ import annotations

import math

import numpy as np

from edge.wire import FLOAT32_DELTA, SQ_ENCODINGS, WRONG_SHAPE, PayloadRejected

CODES, QPARAMS = "codes", "qparams"
BITS_OF = {encoding: bits for bits, encoding in SQ_ENCODINGS.items()}


def encoding_for_bits(bits: int) -> str:
    """The update encoding of a bit width: 32 is float32, 8, 4 and 2 are stochastic quantisation."""
    if bits == 32:
        return FLOAT32_DELTA
    if bits not in SQ_ENCODINGS:
        raise ValueError(f"update bits must be 32, 8, 4 or 2 (--update-bits), got {bits}")
    return SQ_ENCODINGS[bits]


def packed_length(count: int, bits: int) -> int:
    """Bytes that `count` codes of `bits` bits take packed."""
    return -(-count * bits // 8)


def quantize(delta: dict[str, np.ndarray], bits: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The wire tensors ("codes", "qparams") of a float delta at `bits` bits, rounded stochastically by rng."""
    levels = (1 << bits) - 1
    all_codes, qparams = [], []
    for name in sorted(delta):
        x = np.asarray(delta[name], dtype=np.float64).ravel()
        if not np.all(np.isfinite(x)):
            raise ValueError(f"cannot quantise tensor {name}: it holds NaN or infinity")
        lo = float(np.float32(x.min())) if x.size else 0.0
        hi = float(np.float32(x.max())) if x.size else 0.0
        scale = float(np.float32((hi - lo) / levels)) if hi > lo else 1.0
        steps = np.clip((x - lo) / scale, 0.0, levels)
        floor = np.floor(steps)
        codes = floor + (rng.random(x.size) < steps - floor)
        all_codes.append(np.minimum(codes, levels).astype(np.uint8))
        qparams.append((scale, lo))
    flat = np.concatenate(all_codes) if all_codes else np.zeros(0, np.uint8)
    return {CODES: _pack(flat, bits), QPARAMS: np.array(qparams, dtype=np.float32).reshape(len(qparams), 2)}


def dequantize(wire: dict[str, np.ndarray], bits: int, template: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The float32 delta of wire tensors laid out for `template`; PayloadRejected names what does not fit."""
    if set(wire) != {CODES, QPARAMS}:
        raise PayloadRejected(f"a {bits}-bit update carries exactly the tensors {[CODES, QPARAMS]}, got {sorted(wire)}",
                              WRONG_SHAPE)
    names = sorted(template)
    sizes = [math.prod(template[n]) for n in names]
    packed, qparams = np.asarray(wire[CODES]), np.asarray(wire[QPARAMS])
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise PayloadRejected(f"codes must be a flat uint8 tensor, got {packed.dtype} of shape {packed.shape}")
    expected = packed_length(sum(sizes), bits)
    if packed.size != expected:
        raise PayloadRejected(f"{sum(sizes)} values need {expected} bytes of codes at {bits} bits, got {packed.size} "
                              f"(wrong bit width, or another student)", WRONG_SHAPE)
    if qparams.dtype != np.float32 or qparams.shape != (len(names), 2):
        raise PayloadRejected(f"qparams must be float32 of shape ({len(names)}, 2), got {qparams.dtype} "
                              f"{qparams.shape}", WRONG_SHAPE)
    scales, zeros = qparams[:, 0].astype(np.float64), qparams[:, 1].astype(np.float64)
    if not (np.all(np.isfinite(qparams)) and np.all(scales > 0)):
        raise PayloadRejected("every scale must be positive and finite and every zero point finite")
    codes = _unpack(packed, bits, sum(sizes))
    out, start = {}, 0
    with np.errstate(over="ignore"):
        for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
            values = (zeros[i] + codes[start:start + size] * scales[i]).astype(np.float32)
            if not np.all(np.isfinite(values)):
                raise PayloadRejected(f"tensor {name} dequantises beyond float32's range")
            out[name] = values.reshape(template[name])
            start += size
    return out


def rounding_bound(wire: dict[str, np.ndarray], template: dict[str, tuple[int, ...]]) -> float:
    """The most the dequantised update can differ in L2 from the values it encodes: sqrt(sum n_t s_t^2)."""
    scales = np.asarray(wire[QPARAMS], dtype=np.float64)[:, 0]
    sizes = np.array([math.prod(template[n]) for n in sorted(template)], dtype=np.float64)
    return float(np.sqrt(np.sum(sizes * scales ** 2)))


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return codes
    per_byte = 8 // bits
    padded = np.zeros(packed_length(codes.size, bits) * per_byte, np.uint8)
    padded[:codes.size] = codes
    lanes = padded.reshape(-1, per_byte).astype(np.uint16)
    shifts = (np.arange(per_byte) * bits).astype(np.uint16)
    return np.bitwise_or.reduce(lanes << shifts, axis=1).astype(np.uint8)


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The codes, as float64; PayloadRejected if the padding bits of the last byte are not zero."""
    if bits == 8:
        return packed.astype(np.float64)
    per_byte, mask = 8 // bits, (1 << bits) - 1
    shifts = np.arange(per_byte) * bits
    codes = ((packed[:, None] >> shifts) & mask).reshape(-1)
    if np.any(codes[count:]):
        raise PayloadRejected(f"the padding bits after the last of {count} codes are not zero")
    return codes[:count].astype(np.float64)
