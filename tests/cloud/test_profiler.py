"""Profiler: FLOPs, sizes and the TFLite-Micro arena estimate, checked against the interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cloud.profiler import arena_report, layer_flops, lower_to_tflm, profile_model, profile_teacher
from export.op_support import model_ops
from export.shards import export_int8_shard
from export.teacher_dir import load_teacher_dir, prefix_model

ARENA_TOLERANCE = 0.02  # the stated bound: |estimate - measured| / measured <= 2 %


@pytest.fixture(scope="module")
def bundle(default_teacher_dir: Path):
    return load_teacher_dir(default_teacher_dir)


@pytest.fixture(scope="module")
def exported(bundle) -> dict[int, bytes]:
    return {k: export_int8_shard(prefix_model(bundle.model, k), bundle.calibration_x)
            for k in range(1, bundle.num_exits + 1)}


def test_arena_estimate_is_within_two_percent_of_tflite_micro_for_every_prefix(bundle, exported) -> None:
    checks = arena_report(bundle.model, bundle.calibration_x, exported)
    assert [c.k for c in checks] == [1, 2, 3, 4]
    for c in checks:
        assert abs(c.relative_error) <= ARENA_TOLERANCE, c
        assert c.estimated_head_bytes == c.measured_head_bytes, c  # the planner replay is exact


def test_profiled_ops_are_the_ops_of_the_converted_shard(bundle, exported) -> None:
    for p in profile_teacher(bundle.model):
        assert p.ops == model_ops(exported[p.k])


def test_flops_count_a_multiply_add_as_two() -> None:
    x = tf.keras.Input((4, 4, 3))
    conv = tf.keras.layers.Conv2D(5, 3, padding="same")
    dense = tf.keras.layers.Dense(7)
    model = tf.keras.Model(x, dense(tf.keras.layers.Flatten()(conv(x))))
    assert layer_flops(conv) == 2 * (4 * 4 * 5) * (3 * 3 * 3) + 2 * (4 * 4 * 5)  # MACs, bias and relu
    assert layer_flops(dense) == 2 * 80 * 7 + 7
    p = profile_model(model)
    assert p.flops == layer_flops(conv) + layer_flops(dense)
    assert p.params == (3 * 3 * 3 * 5 + 5) + (80 * 7 + 7)
    assert p.float_bytes == 4 * p.params
    assert p.int8_bytes == (3 * 3 * 3 * 5 + 4 * 5) + (80 * 7 + 4 * 7)


def test_peak_activation_is_the_greedy_memory_plan_not_the_largest_pair() -> None:
    # 32x32x3 -> 28x28x24 -> 14x14x24 -> 12x12x48: TFLM places 4,704 B after the 18,816 B buffer,
    # not in the 6,912 B hole, so the head is 18,816 + 4,704, more than any input + output pair
    L = tf.keras.layers
    x = tf.keras.Input((32, 32, 3))
    y = L.Conv2D(48, 3, activation="relu")(L.MaxPooling2D(2)(L.Conv2D(24, 5, activation="relu")(x)))
    graph = lower_to_tflm(tf.keras.Model(x, L.Dense(10)(L.GlobalAveragePooling2D()(y))))
    assert [op.kind for op in graph.ops] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert graph.planned_head_bytes() == 18_816 + 4_704


@pytest.mark.parametrize("dense_only", [False, True], ids=["conv-depthwise-mean", "dense-only"])
def test_other_architectures_are_estimated_close_to_tflite_micro(dense_only: bool) -> None:
    from export.tflm_arena import measure_arena, minimum_arena_bytes

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    x = tf.keras.Input((16, 16, 3))
    if dense_only:  # tiny activations: the planner's temporary memory, not the head, sets the arena
        h = L.Dense(32, activation="relu")(L.Flatten()(x))
    else:  # equal-size buffers: TFLM's tie order in the greedy planner matters
        h = L.DepthwiseConv2D(3, padding="same", activation="relu")(L.Conv2D(8, 3, strides=2, padding="same",
                                                                            activation="relu")(x))
        h = L.GlobalAveragePooling2D()(L.Conv2D(16, 1, activation="relu")(h))
    out = L.Dense(10)(L.Dense(32, activation="relu")(h))
    model = tf.keras.Model(x, out)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.full(layer.bias.shape, 0.05, np.float32))
    tflite = export_int8_shard(model, np.random.default_rng(0).random((32, 16, 16, 3), np.float32))
    measured = measure_arena(tflite)
    p = profile_model(model)
    assert p.ops == model_ops(tflite)
    assert p.peak_activation_bytes == measured.head_bytes
    needed = minimum_arena_bytes(tflite)
    assert abs(p.arena_bytes - needed) / needed <= ARENA_TOLERANCE
