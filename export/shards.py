"""Full-int8 TFLite shards from Keras prefixes, and their check against Keras in LiteRT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from edge.shard_runtime import ShardRunner
from export.converter_log import captured_native_stderr


@dataclass(frozen=True)
class ShardCheck:
    """How the exported shard agrees with its float Keras prefix on held-out data."""

    top1_agreement: float
    keras_accuracy: float
    tflite_accuracy: float
    num_examples: int


def export_int8_shard(prefix: tf.keras.Model, representative_x: np.ndarray, num_calibration: int = 200) -> bytes:
    """Convert a prefix to full-int8 TFLite (int8 weights/activations, int8 input and output)."""
    if len(representative_x) == 0:
        raise ValueError("representative data set is empty; pass cloud-split images for calibration")
    sample = representative_x[:num_calibration].astype(np.float32)

    def representative():
        for row in sample:
            yield [row[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(prefix)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with captured_native_stderr():
        return converter.convert()


def check_shard(model_bytes: bytes, prefix: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> ShardCheck:
    """Run the shard in ai-edge-litert and compare top-1 with the Keras prefix."""
    tflite_logits = ShardRunner.from_bytes(model_bytes).logits(x)
    keras_logits = prefix.predict(x, verbose=0)
    t, k = np.argmax(tflite_logits, 1), np.argmax(keras_logits, 1)
    return ShardCheck(float(np.mean(t == k)), float(np.mean(k == y)), float(np.mean(t == y)), len(y))
