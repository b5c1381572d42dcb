"""The one place that picks a TFLite interpreter on a device: ai-edge-litert, else tflite-runtime."""

from __future__ import annotations

from typing import Any


def interpreter_class() -> Any:
    """The LiteRT Interpreter class available here, or ImportError naming what to install."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ImportError("no TFLite interpreter found: pip install -r requirements-edge.txt "
                              "(ai-edge-litert, or tflite-runtime on older devices)") from None
    return Interpreter


def load_interpreter(model_bytes: bytes) -> Any:
    """An allocated interpreter (LiteRT's Interpreter, which has no type stubs) for a flatbuffer held in memory."""
    if not isinstance(model_bytes, (bytes, bytearray)) or len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise ValueError("model_bytes must be a TFLite flatbuffer (bytes with the TFL3 identifier)")
    interp = interpreter_class()(model_content=bytes(model_bytes))
    interp.allocate_tensors()
    return interp
