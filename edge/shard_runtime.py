"""Run an int8 teacher shard in LiteRT on a device's local data (no TensorFlow)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.litert import load_interpreter


def quantise(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float values as the tensor's dtype: round(x / scale + zero_point), saturated; float32 passes through."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return x.astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantise(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A tensor's values as float32: (y - zero_point) * scale; a float32 tensor passes through."""
    if y.dtype == np.float32:
        return y
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32, copy=False)


class ShardRunner:
    """A quantised shard: float images in, dequantised exit logits out."""

    def __init__(self, interpreter: Any) -> None:
        self._interp = interpreter
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]
        self._rows = int(self._in["shape"][0])  # rows the interpreter's input holds now (exported: 1)
        self._batches: bool | None = None  # whether one invoke over all rows gives the per-row logits (checked once)

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> ShardRunner:
        return cls(load_interpreter(model_bytes))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"][1:])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Exit logits for every row of x (float, shape (N, *input_shape))."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"shard expects inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        q = quantise(x, self._in["dtype"], *self._in["quantization"])  # elementwise: once for all rows
        raw = self._batched(q) if len(q) > 1 and self._batches is not False else None
        if raw is None:
            raw = self._row_by_row(q)
        return dequantise(raw, *self._out["quantization"])

    def _row_by_row(self, q: np.ndarray) -> np.ndarray:
        """The exported graph's own batch of one, one invoke per row."""
        self._resize(1)
        raw = np.empty((len(q), int(self._out["shape"][-1])), dtype=self._out["dtype"])
        for i in range(len(q)):
            self._interp.set_tensor(self._in["index"], q[i:i + 1])
            self._interp.invoke()
            raw[i] = self._interp.get_tensor(self._out["index"])[0]
        return raw

    def _batched(self, q: np.ndarray) -> np.ndarray | None:
        """All rows in one invoke (the interpreter resized to them), or None where the graph does not allow it.
        The first time, the first two rows are checked against row-by-row invokes: integer kernels give the
        same codes at any batch size, and a graph that does not (a reshape bound to batch 1) stays row by row."""
        try:
            self._resize(len(q))
            self._interp.set_tensor(self._in["index"], q)
            self._interp.invoke()
            raw = np.array(self._interp.get_tensor(self._out["index"]))
        except (ValueError, RuntimeError):
            self._batches = False
            return None
        if raw.shape != (len(q), int(self._out["shape"][-1])):
            self._batches = False
            return None
        if self._batches is None:
            self._batches = bool(np.array_equal(raw[:2], self._row_by_row(q[:2])))
            if not self._batches:
                return None
        return raw

    def _resize(self, rows: int) -> None:
        if rows != self._rows:
            self._interp.resize_tensor_input(self._in["index"], [rows, *self.input_shape])
            self._interp.allocate_tensors()
            self._rows = rows
