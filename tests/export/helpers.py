"""Shared builders for the export tests: teacher directories on digits, plans, deliberately bad models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from cloud.teacher import TeacherConfig, build_teacher, exit_accuracies, train_teacher
from export.teacher_dir import TeacherBundle, save_teacher_dir

TINY = TeacherConfig(blocks=((8, False), (16, True)))


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (N, 8, 8, 1) in [0, 1]: 1,400 training images (calibration), 397 held out."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], d.target[order].astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def make_teacher_dir(directory: Path, config: TeacherConfig, epochs: int, seed: int = 0) -> Path:
    x, y, hx, hy = digits_split(seed)
    teacher = build_teacher(config, seed=seed)
    train_teacher(teacher, x, y, epochs=epochs, seed=seed)
    return save_teacher_dir(directory, TeacherBundle(teacher, exit_accuracies(teacher, hx, hy), x, hx, hy))


def write_plan(path: Path, teacher_dir: Path, shards: dict[str, tuple[int, list[str]]]) -> Path:
    """A hand-written plan.json in the planner's schema."""
    plan = {"teacher_dir": str(teacher_dir), "lambda": 0.1, "solver": "exact",
            "shards": {sid: {"k": k, "targets": targets, "flops_per_sample": 0, "int8_bytes_estimate": 0,
                             "arena_bytes_estimate": 0, "expected_accuracy": 0.0}
                       for sid, (k, targets) in shards.items()},
            "devices": [{"device_id": f"dev{i}", "shard_id": sid, "k": k, "target": targets[0],
                         "flops_per_epoch": 0, "model_bytes": 0, "arena_bytes": 0, "expected_accuracy": 0.0}
                        for i, (sid, (k, targets)) in enumerate(shards.items())]}
    path.write_text(json.dumps(plan, indent=2))
    return path


def bad_model(activation: tf.keras.layers.Layer) -> tf.keras.Model:
    """conv -> `activation` -> flatten -> dense: one layer a target may not run."""
    tf.keras.utils.set_random_seed(0)
    i = tf.keras.Input((8, 8, 1), name="image")
    h = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv")(i)
    h = activation(h)
    h = tf.keras.layers.Flatten(name="flatten")(h)
    return tf.keras.Model(i, tf.keras.layers.Dense(10, name="logits")(h))


def shard_source(teacher, k: int):
    """A PTQ ShardSource for prefix k of a loaded TeacherBundle."""
    from export.artefact import ShardSource

    prefix = teacher.prefix(k)
    return ShardSource(f"p{k}", k, prefix, prefix, "ptq", teacher.calibration_x, teacher.holdout_x,
                       teacher.holdout_y, prefix.predict(teacher.holdout_x, verbose=0))
