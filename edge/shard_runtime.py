"""Run an int8 teacher shard in LiteRT on a device's local data (no TensorFlow)."""

from __future__ import annotations

import numpy as np

from edge.litert import load_interpreter


class ShardRunner:
    """A quantised shard: float images in, dequantised exit logits out."""

    def __init__(self, interpreter) -> None:
        self._interp = interpreter
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> "ShardRunner":
        return cls(load_interpreter(model_bytes))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"][1:])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Exit logits for every row of x (float, shape (N, *input_shape))."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"shard expects inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        q = self._quantise(x)  # elementwise, so once for all rows; the shard takes one row per invoke
        raw = np.empty((len(x), int(self._out["shape"][-1])), dtype=self._out["dtype"])
        for i in range(len(q)):
            self._interp.set_tensor(self._in["index"], q[i:i + 1])
            self._interp.invoke()
            raw[i] = self._interp.get_tensor(self._out["index"])[0]
        return self._dequantise(raw).astype(np.float32, copy=False)

    def _quantise(self, x: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self._in["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _dequantise(self, y: np.ndarray) -> np.ndarray:
        if self._out["dtype"] == np.float32:
            return y
        scale, zero = self._out["quantization"]
        return (y.astype(np.float32) - zero) * scale
