"""The fleet-wide compact student: a dense-only Keras classifier whose training step is TFLite-builtin."""

from __future__ import annotations

import tensorflow as tf

from export.student import dense_weight_names


def builtin_relu(x: tf.Tensor) -> tf.Tensor:
    """ReLU written as x * (x > 0) so that its gradient uses TFLite builtin ops only (no ReluGrad)."""
    return x * tf.cast(x > 0, tf.float32)


def build_student(
    input_dim: int = 64,
    hidden: tuple[int, ...] = (64,),
    num_classes: int = 10,
    seed: int = 0,
) -> tf.keras.Model:
    """Build the dense-only student (layers dense_0..dense_L, last one linear logits), seeded init."""
    if input_dim < 1 or num_classes < 2 or any(int(h) < 1 for h in hidden):
        raise ValueError(
            f"student needs input_dim >= 1, num_classes >= 2 and positive hidden widths; "
            f"got input_dim={input_dim}, hidden={hidden}, num_classes={num_classes}"
        )
    inputs = tf.keras.Input(shape=(input_dim,), name="x", dtype=tf.float32)
    h = inputs
    widths = [int(w) for w in hidden] + [int(num_classes)]
    for i, width in enumerate(widths):
        last = i == len(widths) - 1
        h = tf.keras.layers.Dense(
            width,
            activation=None if last else builtin_relu,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed * 1000 + i),
            bias_initializer="zeros",
            name=f"dense_{i}",
        )(h)
    return tf.keras.Model(inputs, h, name="student")


def student_weight_names(model: tf.keras.Model) -> list[str]:
    """Stable weight names in weight order: dense_0/kernel, dense_0/bias, dense_1/kernel, ..."""
    return dense_weight_names(model)
