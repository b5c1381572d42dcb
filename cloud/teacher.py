"""The multi-exit teacher (Keras): blocks B1..BL, each followed by an exit head H1..HL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cloud.evaluation import mean_group_accuracy

TEACHER_LEARNING_RATE = 3e-3  # Adam, for training in the cloud


@dataclass(frozen=True)
class TeacherConfig:
    """Shape of the teacher: input (H, W, C; a series is (length, 1, 1)), classes, and one (filters,
    pool_after) pair per block."""

    input_shape: tuple[int, int, int] = (8, 8, 1)
    num_classes: int = 10
    blocks: tuple[tuple[int, bool], ...] = ((16, False), (48, True), (96, False), (128, False))


def build_teacher(config: TeacherConfig = TeacherConfig(), seed: int = 0) -> tf.keras.Model:
    """A functional Keras model whose outputs are the logits of every exit, shallowest first."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=config.input_shape, name="image")
    x = inputs
    exits = []
    one_dim = config.input_shape[1] == 1  # a series stored as (length, 1, 1): convolve and pool along time only
    kernel = (3, 1) if one_dim else 3
    for k, (filters, pool) in enumerate(config.blocks, start=1):
        x = tf.keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"block{k}_conv")(x)
        if pool:
            x = tf.keras.layers.MaxPooling2D((2, 1) if one_dim else 2, name=f"block{k}_pool")(x)
        h_side, w_side = int(x.shape[1]), int(x.shape[2])
        h = tf.keras.layers.AveragePooling2D((max(1, h_side // 2), max(1, w_side // 2)),
                                             name=f"exit{k}_pool")(x)  # keep a 2x2 (series: 2x1) layout
        h = tf.keras.layers.Flatten(name=f"exit{k}_flatten")(h)
        exits.append(tf.keras.layers.Dense(config.num_classes, name=f"exit{k}_logits")(h))
    return tf.keras.Model(inputs, exits, name="multi_exit_teacher")


def num_exits(teacher: tf.keras.Model) -> int:
    """How many exits (prefixes) the teacher has."""
    return len(teacher.outputs)


def train_teacher(teacher: tf.keras.Model, x: np.ndarray, y: np.ndarray, epochs: int = 30,
                  batch_size: int = 32, seed: int = 0, verbose: int = 0) -> None:
    """Train all exits jointly (sum of per-exit cross-entropies), deterministically."""
    tf.keras.utils.set_random_seed(seed)
    compile_teacher(teacher, TEACHER_LEARNING_RATE)
    teacher.fit(x, [y] * num_exits(teacher), epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)


def compile_teacher(model: tf.keras.Model, learning_rate: float) -> None:
    """Adam at learning_rate on the sum of every exit's sparse cross-entropy on logits (labels as integers)."""
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=[tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * len(model.outputs))


def final_exit_accuracy(teacher: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the last exit on (x, y): the full teacher's, or a FedAvg model's, accuracy."""
    outs = teacher(x, training=False)
    last = outs[-1] if isinstance(outs, (list, tuple)) else outs
    return float(np.mean(np.argmax(np.asarray(last), axis=1) == y))


def mean_device_accuracy(teacher: tf.keras.Model, holdouts: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The last exit's accuracy on every device's own held-out data, mean over devices (NaN without any)."""
    kept = [(x, y) for x, y in holdouts if len(y)]
    if not kept:
        return float("nan")
    outs = teacher.predict(np.concatenate([x for x, _ in kept]), batch_size=1024, verbose=0)  # one pass for all
    last = outs[-1] if isinstance(outs, (list, tuple)) else outs
    correct = np.argmax(np.asarray(last), axis=1) == np.concatenate([y for _, y in kept])
    return mean_group_accuracy(correct, np.array([len(y) for _, y in kept]))


def exit_accuracies(teacher: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Top-1 accuracy of every exit on (x, y)."""
    outs = teacher.predict(x, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    return [float(np.mean(np.argmax(o, axis=1) == y)) for o in outs]
