"""FedAvg on a (tiny) multi-exit Keras teacher: it learns, and its bytes are the real payloads."""

from __future__ import annotations

import numpy as np

from cloud.teacher import TeacherConfig, build_teacher
from edge.plan import TrainingSettings
from edge.wire import WeightsMeta, encode_weights
from simulator.baselines.fedavg import keras_weights, run_fedavg
from simulator.baselines.settings import BaselineSettings
from simulator.data import federated_split, load_digits

TINY = TeacherConfig(blocks=((8, False), (16, True)))


def test_two_devices_two_rounds_improve_over_the_initial_teacher():
    split = federated_split(load_digits(), 2, seed=0)
    model = build_teacher(TINY, seed=0)
    initial = keras_weights(model)
    settings = BaselineSettings(rounds=2, training=TrainingSettings(lr=3e-3), seed=0)
    result = run_fedavg("FedAvg", model, split.devices, split.test, settings)
    assert len(result.accuracy_per_round) == 2
    assert result.final_accuracy > result.initial_accuracy + 0.3
    assert result.params == sum(v.size for v in initial.values())
    expected_down = 2 * len(encode_weights(initial, WeightsMeta("compare", 0, 0)))
    assert result.bytes_down_per_round[0] == expected_down
    assert abs(result.bytes_down_per_round[1] - expected_down) <= 2 * 2  # version/round digits may grow
    assert all(4 * result.params * 2 < up < expected_down * 1.05 for up in result.bytes_up_per_round)
    assert result.epsilon == 0.0 and result.flops_per_epoch_mean > 0
    assert any(not np.array_equal(initial[k], v) for k, v in keras_weights(model).items())
