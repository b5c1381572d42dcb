"""The TFLite-Micro arena measurement: recorded total, minimum working arena, clear failures."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from export.shards import export_int8_shard
from export.tflm_arena import measure_arena, measure_arena_bytes, minimum_arena_bytes


@pytest.fixture(scope="module")
def tiny_int8() -> bytes:
    tf.keras.utils.set_random_seed(0)
    x = tf.keras.Input((8, 8, 1))
    h = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    model = tf.keras.Model(x, tf.keras.layers.Dense(10)(tf.keras.layers.Flatten()(h)))
    return export_int8_shard(model, np.random.default_rng(0).random((20, 8, 8, 1), np.float32))


def test_measured_arena_is_head_plus_tail_and_holds_the_activations(tiny_int8: bytes) -> None:
    usage = measure_arena(tiny_int8)
    assert usage.total_bytes == usage.head_bytes + usage.tail_bytes == measure_arena_bytes(tiny_int8)
    assert usage.head_bytes >= 8 * 8 * 8 * 2  # the conv output, read again by the reshape
    assert "Arena allocation total" in usage.report


def test_the_measuring_arena_is_generous_and_the_recorded_total_is_enough(tiny_int8: bytes) -> None:
    from export.tflm_arena import _allocate_and_invoke, _captured_fd2, _generous_arena

    total = measure_arena_bytes(tiny_int8)
    assert _generous_arena(tiny_int8) >= 2 * total
    with _captured_fd2():
        assert _allocate_and_invoke(tiny_int8, total)  # an arena of exactly the recorded total runs the model


def test_minimum_arena_is_the_first_working_size_from_the_recorded_total_up(tiny_int8: bytes) -> None:
    from export.tflm_arena import _allocate_and_invoke, _captured_fd2

    total, least = measure_arena_bytes(tiny_int8), minimum_arena_bytes(tiny_int8)
    assert total <= least <= total + 1024 and least % 16 == 0
    with _captured_fd2():
        assert _allocate_and_invoke(tiny_int8, least)
        if least - 16 >= total:
            assert not _allocate_and_invoke(tiny_int8, least - 16)
