"""Shared builders for the export tests: the tiny teacher's architecture, plans, deliberately bad models."""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from cloud.teacher import TeacherConfig

TINY = TeacherConfig(blocks=((8, False), (16, True)))  # two exits: fast conversions


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
