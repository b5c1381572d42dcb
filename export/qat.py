"""Quantisation-aware fine-tuning of a prefix with tensorflow-model-optimization (tfmot).

The teacher directory's calibration set has images only, so the float prefix labels them itself:
the fine-tuning target is softmax(float logits) (soft labels, i.e. distillation from the float
model), which aims the quantised model at agreeing with its float prefix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class QatConfig:
    """How long and how fast to fine-tune; seed makes it repeatable."""

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f"QatConfig needs epochs >= 1, batch_size >= 1, learning_rate > 0; got {self}")


def _import_tfmot():
    """Import tfmot without letting it switch this process's Keras to tf_keras.

    tfmot 0.8 sets TF_USE_LEGACY_KERAS=1 on import, which makes TF import tf_keras; tf_keras then
    re-registers every `keras.*` API name in TF's symbol table, so Keras 2.15 deserialises a
    Keras 2.15 layer's config (module "keras.layers") into a tf_keras class and quantize_model fails
    with "Conv2D ... supplied to wrapper is not a supported layer type". On TF 2.15 both packages are
    Keras 2: put back the environment variable and the `keras.*` names that existed before, so the
    Keras that loaded the teacher stays the one everything resolves to."""
    import os

    from tensorflow.python.util import tf_export

    env_before = os.environ.get("TF_USE_LEGACY_KERAS")
    table = tf_export._NAME_TO_SYMBOL_MAPPING  # private: the table keras' deserialiser reads
    keras_names_before = {k: v for k, v in table.items() if k.startswith(("keras.", "compat.v1.keras."))}
    import tensorflow_model_optimization as tfmot

    if env_before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = env_before
    table.update(keras_names_before)
    return tfmot


class QatUnsupported(ValueError):
    """tfmot cannot wrap a layer of the prefix with fake-quantisation."""


def quantization_aware_model(prefix: tf.keras.Model, calibration_x: np.ndarray,
                             config: QatConfig = QatConfig()) -> tf.keras.Model:
    """A tfmot QAT copy of the prefix fine-tuned on calibration_x; the prefix itself is left untouched."""
    tfmot = _import_tfmot()
    tf.keras.utils.set_random_seed(config.seed)
    clone = tf.keras.models.clone_model(prefix)
    clone.set_weights(prefix.get_weights())
    try:
        with warnings.catch_warnings():  # tfmot serialises tf_keras initialisers through Keras 2: harmless
            warnings.simplefilter("ignore", UserWarning)
            model = tfmot.quantization.keras.quantize_model(clone)
    except (RuntimeError, ValueError) as exc:  # "Layer x:<class ...> is not supported..."
        raise QatUnsupported(f"quantisation-aware training cannot wrap the prefix: {exc}") from exc
    soft = tf.nn.softmax(prefix.predict(calibration_x, verbose=0), axis=-1).numpy()
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate),
                  loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(calibration_x, soft, epochs=config.epochs, batch_size=config.batch_size, shuffle=True, verbose=0)
    return model
