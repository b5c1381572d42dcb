"""The tensor arena a TFLite model really needs in the TFLite-Micro interpreter.

`measure_arena_bytes(model)` loads the flatbuffer in TFLite-Micro's Python interpreter (the same
kernels and allocator the firmware links), runs one inference on a zero input and reads the
RecordingMicroAllocator's "Arena allocation total" from `print_allocations()` (which TFLM writes
to the native stderr, fd 2). `minimum_arena_bytes(model)` is the smallest arena_size (in 16-byte
steps, not below that total) with which the interpreter allocates and invokes: the total can fall
short by temporary allocations made while kernels prepare. Size the firmware's `tensor_arena[]`
from the minimum plus headroom (the 32-bit target's structs differ; CMSIS-NN kernels may ask for
scratch memory the reference kernels do not).

The measuring arena is sized generously from the model itself (every activation tensor at once,
plus 64 KB): TFLite-Micro's Python interpreter can crash, not fail cleanly, when an arena is far
too small, so no probing with small arenas happens here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from export.converter_log import captured_native_stderr

_LINE = re.compile(r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes")


@dataclass(frozen=True)
class ArenaUsage:
    """What TFLM's RecordingMicroAllocator reports: head (planned tensors) + tail (persistent)."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    report: str


class ArenaMeasurementError(RuntimeError):
    """The model does not load or run in TFLite-Micro (unsupported op, arena too small...)."""


def measure_arena(tflite_bytes: bytes, arena_size: int | None = None) -> ArenaUsage:
    """Run the model once in TFLite-Micro with a generous arena and return the recorded usage.

    arena_size overrides the generous default; keep it large (see the module docstring)."""
    size = arena_size if arena_size is not None else _generous_arena(tflite_bytes)
    with _captured_fd2() as captured:
        ok = _allocate_and_invoke(tflite_bytes, size, print_allocations=True)
    text = captured.text
    if not ok:
        raise ArenaMeasurementError(
            f"TFLite-Micro could not allocate or run the model with a {size:,} B arena: "
            f"{_last_lines(text)}; check that every op is in export.op_support.TFLM_OPS, or pass a larger arena_size")
    found = {name: int(v) for name, v in _LINE.findall(text)}
    if "total" not in found:
        raise ArenaMeasurementError(f"TFLite-Micro printed no arena total; got: {_last_lines(text)}")
    report = "\n".join(line for line in text.splitlines() if line.startswith("[RecordingMicroAllocator]"))
    return ArenaUsage(found["total"], found.get("head", 0), found.get("tail", 0), report)


def measure_arena_bytes(tflite_bytes: bytes) -> int:
    """Bytes of tensor arena TFLite-Micro allocated for the model (RecordingMicroAllocator total)."""
    return measure_arena(tflite_bytes).total_bytes


def minimum_arena_bytes(tflite_bytes: bytes, step: int = 16, recorded_total: int | None = None) -> int:
    """Smallest multiple of step, not below the recorded total, with which TFLite-Micro allocates and invokes.

    The recorded total can fall short of what allocation needs (temporary allocations during
    kernel Prepare are not in it), so this searches upward from it, doubling the distance until an
    arena works, then bisects. Only arenas >= the recorded total are tried (see the module
    docstring on why far smaller ones are never probed). Pass recorded_total (measure_arena_bytes)
    if it is already known, so the model is not measured twice."""
    total = recorded_total if recorded_total is not None else measure_arena(tflite_bytes).total_bytes
    first = -(-total // step) * step
    with _captured_fd2():
        if _allocate_and_invoke(tflite_bytes, first):
            return first
        lo, gap = first, step
        while not _allocate_and_invoke(tflite_bytes, first + gap):
            lo, gap = first + gap, gap * 2
            if gap > 64 * 1024 * 1024:
                raise ArenaMeasurementError(f"TFLite-Micro failed even with {first + gap:,} B of arena")
        hi = first + gap
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if _allocate_and_invoke(tflite_bytes, mid):
                hi = mid
            else:
                lo = mid
    return hi


def _allocate_and_invoke(tflite_bytes: bytes, arena_size: int, print_allocations: bool = False) -> bool:
    from tflite_micro.python.tflite_micro import runtime

    try:
        interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=arena_size)
        for i in range(_num_inputs(tflite_bytes)):
            d = interp.get_input_details(i)
            interp.set_input(np.zeros(d["shape"], d["dtype"]), i)
        interp.invoke()
        if print_allocations:
            interp.print_allocations()
    except RuntimeError:
        return False
    return True


_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4, 17: 2}  # TensorType -> bytes


def _generous_arena(tflite_bytes: bytes) -> int:
    """An arena surely large enough: every non-constant tensor of every subgraph at once, plus 64 KB."""
    from tflite_micro.python.tflite_micro import runtime

    model = runtime.convert_bytearray_to_object(bytearray(tflite_bytes))
    total = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            buf = model.buffers[t.buffer] if model.buffers is not None and t.buffer < len(model.buffers) else None
            if buf is not None and buf.data is not None and len(buf.data) > 0:
                continue  # a constant: it stays in flash
            n = int(abs(int(np.prod(t.shape)))) if t.shape is not None else 1
            total += n * _DTYPE_BYTES.get(t.type, 8) + 64
    return 2 * total + 64 * 1024


def _num_inputs(tflite_bytes: bytes) -> int:
    from tflite_micro.python.tflite_micro import runtime

    return len(runtime.convert_bytearray_to_object(bytearray(tflite_bytes)).subgraphs[0].inputs)


def _captured_fd2():
    """Collect what native code writes to fd 2 during the block (TFLM's MicroPrintf goes there)."""
    return captured_native_stderr(replay_on_error=False)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "no message"
