"""Full-int8 TFLite shards from Keras prefixes, and their check against Keras in LiteRT."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from export.quantize import convert_int8
from export.verify import Agreement, compare, litert_logits


def export_int8_shard(prefix: tf.keras.Model, representative_x: np.ndarray, num_calibration: int = 200) -> bytes:
    """Convert a prefix to full-int8 TFLite (int8 weights/activations, int8 input and output, dynamic batch)."""
    if len(representative_x) == 0:
        raise ValueError("representative data set is empty; pass cloud-split images for calibration")
    return convert_int8(prefix, representative_x, target="linux", io_type="int8", batch=None,
                        num_calibration=num_calibration)


def check_shard(model_bytes: bytes, prefix: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> Agreement:
    """Run the shard in ai-edge-litert and compare top-1 with the Keras prefix."""
    return compare(litert_logits(model_bytes, x), prefix.predict(x, verbose=0), y)
