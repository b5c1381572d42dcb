"""The global student's evaluation: the mean of per-device accuracies, computed in one batch."""

from __future__ import annotations

import numpy as np

from cloud.evaluation import mean_group_accuracy


def test_mean_group_accuracy_weights_every_device_equally_not_every_row() -> None:
    correct = np.array([True, True, True, False, False, True])  # devices of 3, 2 and 1 rows
    assert mean_group_accuracy(correct, np.array([3, 2, 1])) == (1.0 + 0.0 + 1.0) / 3


def test_mean_group_accuracy_matches_the_per_device_loop() -> None:
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 9, size=500)
    correct = rng.random(int(sizes.sum())) < 0.7
    starts = np.concatenate([[0], np.cumsum(sizes)])
    loop = np.mean([correct[a:b].mean() for a, b in zip(starts[:-1], starts[1:], strict=True)])
    assert abs(mean_group_accuracy(correct, sizes) - loop) < 1e-12
