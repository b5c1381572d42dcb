"""The global student's downlink as a quantised step from the version a device holds (numpy only).

The aggregator does not send every device the whole new model. It quantises its own step, new - old, with
the update's unbiased stochastic rounding (edge.stochastic_quantization), and the new global model *is*
old + dequantised step: the aggregator keeps exactly the weights every device rebuilds, so both sides
hold the same float32 bits and the next step is again against a shared base. The rounding is
post-processing of an already privatised aggregate: it spends no privacy. A device that missed a version
cannot apply the step and fetches the full model instead (edge.agent).
"""

from __future__ import annotations

import numpy as np

from edge.stochastic_quantization import dequantize, quantize
from edge.wire import PayloadRejected


def quantised_step(old: dict[str, np.ndarray], new: dict[str, np.ndarray], bits: int,
                   rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The wire tensors of the step old -> new at `bits` bits, and the model a device rebuilds from them."""
    if set(old) != set(new):
        raise ValueError(f"old and new models differ in tensors: {sorted(set(old) ^ set(new))}")
    step = {k: np.asarray(new[k], np.float64) - np.asarray(old[k], np.float64) for k in old}
    wire = quantize(step, bits, rng)
    return wire, apply_step(old, wire, bits)


def apply_step(old: dict[str, np.ndarray], wire: dict[str, np.ndarray], bits: int) -> dict[str, np.ndarray]:
    """old + the dequantised step, in float32; PayloadRejected if the step does not fit `old` or is not finite."""
    return add_step(old, dequantize(wire, bits, step_template(old)))


def step_template(old: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The names and shapes a step for `old` must have (what dequantize checks it against)."""
    return {k: tuple(np.shape(v)) for k, v in old.items()}


def add_step(old: dict[str, np.ndarray], step: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """old + an already dequantised step (one float32 addition per value); PayloadRejected if it leaves float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        new = {k: (np.asarray(old[k], np.float32) + step[k]).astype(np.float32) for k in old}
    bad = sorted(k for k, v in new.items() if not np.all(np.isfinite(v)))
    if bad:
        raise PayloadRejected(f"the step takes tensors {bad} beyond float32's range")
    return new
