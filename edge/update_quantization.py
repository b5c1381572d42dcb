"""8-bit update quantisation (FedCompress; wire encoding UINT8_AFFINE_DELTA): per-tensor affine uint8, numpy only.

A tensor x becomes codes q = round((x - offset) / scale) in 0..255 with offset = min(x) and
scale = (max(x) - min(x)) / 255, so dequantising, offset + q * scale, is within scale / 2 of x
(plus float32 rounding). On the wire (edge.wire encoding UINT8_AFFINE_DELTA) every tensor travels
as its uint8 codes plus a float32 "<name>.qparams" tensor [scale, offset]: 1 byte per value
instead of 4, i.e. about 4x fewer bytes for any tensor much larger than its 8-byte qparams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge import stochastic_quantization as stochastic
from edge.wire import FLOAT32_DELTA, UINT8_AFFINE_DELTA, PayloadRejected

LEVELS = 255  # uint8 codes 0..255
QPARAMS_SUFFIX = ".qparams"


@dataclass(frozen=True)
class QuantizedTensor:
    """uint8 codes of one tensor and the affine map back: value = offset + code * scale."""

    codes: np.ndarray
    scale: float
    offset: float


def quantize_tensor(x: np.ndarray) -> QuantizedTensor:
    """Per-tensor affine uint8 quantisation of a finite float tensor (min maps to 0, max to 255)."""
    x64 = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x64)):
        raise ValueError("cannot quantise a tensor containing NaN or infinity")
    if x64.size == 0:
        return QuantizedTensor(np.zeros(x64.shape, np.uint8), 1.0, 0.0)
    lo, hi = float(np.float32(x64.min())), float(np.float32(x64.max()))
    scale = float(np.float32((hi - lo) / LEVELS)) if hi > lo else 1.0
    codes = np.clip(np.rint((x64 - lo) / scale), 0, LEVELS).astype(np.uint8)
    return QuantizedTensor(codes, scale, lo)


def dequantize_tensor(q: QuantizedTensor) -> np.ndarray:
    """float32 values offset + codes * scale (infinite where that leaves float32's range)."""
    with np.errstate(over="ignore"):
        return (q.offset + q.codes.astype(np.float64) * q.scale).astype(np.float32)


def quantize_update(delta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Wire tensors for a delta: "<name>" uint8 codes and "<name>.qparams" float32 [scale, offset]."""
    out: dict[str, np.ndarray] = {}
    for name, value in delta.items():
        if name.endswith(QPARAMS_SUFFIX):
            raise ValueError(f"tensor name {name!r} ends with the reserved suffix {QPARAMS_SUFFIX!r}")
        q = quantize_tensor(value)
        out[name] = q.codes
        out[name + QPARAMS_SUFFIX] = np.array([q.scale, q.offset], dtype=np.float32)
    return out


def dequantize_update(wire: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of quantize_update (server side); ValueError names a tensor lacking its qparams."""
    out: dict[str, np.ndarray] = {}
    for name, codes in wire.items():
        if name.endswith(QPARAMS_SUFFIX):
            continue
        params = wire.get(name + QPARAMS_SUFFIX)
        if params is None or np.asarray(params).shape != (2,):
            raise ValueError(f"tensor {name!r} has no {name + QPARAMS_SUFFIX!r} [scale, offset] beside it")
        if np.asarray(codes).dtype != np.uint8:
            raise ValueError(f"tensor {name!r} has dtype {np.asarray(codes).dtype}, expected uint8 codes")
        out[name] = dequantize_tensor(QuantizedTensor(np.asarray(codes), float(params[0]), float(params[1])))
    return out


def update_tensors(delta: dict[str, np.ndarray], encoding: str,
                   rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The wire tensors of a float32 delta in `encoding`: float32 as is, uint8 codes + qparams (FedCompress),
    or packed stochastic b-bit codes (edge.stochastic_quantization; rounded by rng, OS entropy if None)."""
    if encoding in stochastic.BITS_OF:
        return stochastic.quantize(delta, stochastic.BITS_OF[encoding], rng or np.random.default_rng())
    if encoding == UINT8_AFFINE_DELTA:
        return quantize_update(delta)
    if encoding == FLOAT32_DELTA:
        return delta
    raise ValueError(f"unknown update encoding {encoding!r}; choose one of "
                     f"{[FLOAT32_DELTA, UINT8_AFFINE_DELTA, *stochastic.BITS_OF]}")


def decoded_delta(tensors: dict[str, np.ndarray], encoding: str,
                  template: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """The float32 delta carried by wire tensors in `encoding` (a b-bit one is laid out by the student's
    `template`); PayloadRejected names what is malformed."""
    if encoding in stochastic.BITS_OF:
        if template is None:
            raise ValueError(f"decoding a {encoding} update needs the student's template (names and shapes)")
        return stochastic.dequantize(tensors, stochastic.BITS_OF[encoding], template)
    if encoding != UINT8_AFFINE_DELTA:
        return tensors
    try:
        delta = dequantize_update(tensors)
    except ValueError as exc:
        raise PayloadRejected(str(exc)) from exc
    for name, value in delta.items():
        if not np.all(np.isfinite(value)):  # finite codes and qparams can still leave float32's range
            raise PayloadRejected(f"tensor {name} dequantises beyond float32's range (NaN or infinity)")
    return delta
