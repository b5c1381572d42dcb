"""Keras -> TFLite conversions used by every target: full int8 (PTQ or QAT source) and float16.

Full int8: int8 weights (per-channel for convolutions, the converter's default) and activations,
calibrated on a representative set, builtin int8 kernels only, quantised input and output
(int8, or uint8 for the Edge TPU). `batch=1` fixes every shape (Edge TPU, TFLite-Micro);
`batch=None` keeps Keras' dynamic batch (Linux LiteRT can resize inputs).
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from export.converter_log import captured_native_stderr
from export.errors import Unsupported, UnsupportedOnTarget

IO_TYPES = {"int8": tf.int8, "uint8": tf.uint8}


def convert_int8(model: tf.keras.Model, representative_x: np.ndarray, *, target: str, io_type: str = "int8",
                 batch: int | None = 1, num_calibration: int = 200) -> bytes:
    """Full-integer TFLite flatbuffer of a Keras classifier (float prefix or tfmot QAT model)."""
    if io_type not in IO_TYPES:
        raise ValueError(f"io_type must be one of {sorted(IO_TYPES)}, got {io_type!r}")
    if len(representative_x) == 0:
        raise ValueError("representative data set is empty; the teacher directory's calibration.npz has no rows")
    sample = np.asarray(representative_x[:num_calibration], np.float32)

    def representative():
        for row in sample:
            yield [row[None, ...]]

    converter = _converter(model, batch)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = IO_TYPES[io_type]
    converter.inference_output_type = IO_TYPES[io_type]
    return _convert(converter, model, target, batch)


def convert_float16(model: tf.keras.Model, *, target: str = "linux", batch: int | None = None) -> bytes:
    """Float16-weight TFLite flatbuffer (float32 input/output, weights dequantised at load)."""
    converter = _converter(model, batch)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _convert(converter, model, target, batch)


def _converter(model: tf.keras.Model, batch: int | None) -> tf.lite.TFLiteConverter:
    if batch is None:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32, name=model.input_names[0])
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)


def _convert(converter, model: tf.keras.Model, target: str, batch: int | None) -> bytes:
    """Run the converter; a TF op without a builtin kernel becomes UnsupportedOnTarget naming its layer."""
    with captured_native_stderr():  # replays the converter log only for failures we cannot explain
        try:
            return bytes(converter.convert())
        except Exception as exc:  # ConverterError: "'tf.Erf' op is neither a custom op nor a flex op"
            tf_ops = sorted(set(re.findall(r"'tf\.(\w+)' op", str(exc))))
            if not tf_ops:
                raise
            failure = exc
    layers = layers_using_tf_ops(model, tf_ops, batch or 1)
    raise UnsupportedOnTarget([
        Unsupported(target, layers.get(op), op, "TensorFlow operation without a TFLite builtin kernel "
                    "(ai-edge-litert, the Edge TPU and TFLite-Micro have no Flex delegate); replace the layer")
        for op in tf_ops]) from failure


def layers_using_tf_ops(model: tf.keras.Model, op_types: list[str], batch: int = 1) -> dict[str, str]:
    """Map TF op types (Erf, Cumprod...) to the first Keras layer whose name scope holds one."""
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    names = {layer.name for layer in model.layers}
    found: dict[str, str] = {}
    for op in graph.get_operations():
        layer = next((part for part in op.name.split("/") if part in names), None)
        if op.type in op_types and layer and op.type not in found:
            found[op.type] = layer
    return found
