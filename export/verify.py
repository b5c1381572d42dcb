"""Run exported artefacts in their own interpreters and compare them with the float Keras prefix.

LiteRT (ai-edge-litert, via edge.shard_runtime) for Linux and Edge TPU models (the Edge TPU
delegate is not available here: its int8 graph is checked on the CPU kernels, which compute the
same quantised arithmetic); TFLite-Micro for microcontroller models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.shard_runtime import ShardRunner, dequantise, quantise


@dataclass(frozen=True)
class Agreement:
    """Top-1 figures of an artefact on held-out data against its float Keras prefix."""

    accuracy: float
    float_accuracy: float
    top1_agreement: float
    num_examples: int

    @property
    def accuracy_drop(self) -> float:
        """Float accuracy minus artefact accuracy (positive = the artefact is worse)."""
        return self.float_accuracy - self.accuracy


def compare(logits: np.ndarray, float_logits: np.ndarray, y: np.ndarray) -> Agreement:
    """Agreement of two logit sets' arg-max, and both accuracies on labels y."""
    pred, ref = np.argmax(logits, 1), np.argmax(float_logits, 1)
    return Agreement(float(np.mean(pred == y)), float(np.mean(ref == y)), float(np.mean(pred == ref)), len(y))


def litert_logits(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantised logits from ai-edge-litert, one row at a time (works for batch-1 and dynamic models)."""
    return ShardRunner.from_bytes(model_bytes).logits(x)


def tflm_logits(model_bytes: bytes, x: np.ndarray, arena_size: int) -> np.ndarray:
    """Dequantised logits from the TFLite-Micro interpreter with the given tensor arena."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena_size))
    ind, outd = interp.get_input_details(0), interp.get_output_details(0)
    shape = tuple(int(d) for d in ind["shape"])
    if tuple(x.shape[1:]) != shape[1:]:
        raise ValueError(f"model expects inputs of shape {shape[1:]}, got {tuple(x.shape[1:])}")
    in_q, out_q = _scale_and_zero_point(ind), _scale_and_zero_point(outd)
    rows = []
    for row in x:
        interp.set_input(quantise(row[None, ...], np.dtype(ind["dtype"]), *in_q), 0)
        interp.invoke()
        rows.append(dequantise(np.asarray(interp.get_output(0)), *out_q)[0])
    return np.stack(rows).astype(np.float32)


def _scale_and_zero_point(details: dict) -> tuple[float, int]:
    """A TFLite-Micro tensor's (scale, zero point); (1.0, 0) when it is not quantised."""
    q = details["quantization_parameters"]
    if len(q["scales"]) == 0:
        return 1.0, 0
    return float(q["scales"][0]), int(q["zero_points"][0])
