"""Hard targets: the device's label where it has one, the shard's arg-max where it has none."""

from __future__ import annotations

import numpy as np
import pytest

from edge.local_training import UNLABELLED, distillation_targets, labels_in_use

LOGITS = np.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)  # arg-max 1, 0, 2


def test_unlabelled_samples_take_the_shards_argmax_and_labelled_ones_keep_their_label() -> None:
    got = distillation_targets(LOGITS, np.array([2, UNLABELLED, UNLABELLED]), 3)
    np.testing.assert_array_equal(got.argmax(axis=1), [2, 0, 2])
    assert got.dtype == np.float32 and np.all(got.sum(axis=1) == 1)


def test_no_labels_at_all_is_the_argmax_everywhere() -> None:
    np.testing.assert_array_equal(distillation_targets(LOGITS, None, 3).argmax(axis=1), [1, 0, 2])


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 1]), "2 labels for 3 samples"),
    (np.array([0, 3, 1]), "class indices 0..2, or -1"),
    (np.array([0, -2, 1]), "class indices 0..2, or -1"),
], ids=["too-few", "class-out-of-range", "negative-not-unlabelled"])
def test_malformed_labels_are_refused_naming_the_rule(labels: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        distillation_targets(LOGITS, labels, 3)


def test_plan_fraction_none_hides_every_label_the_data_file_holds() -> None:
    labels = np.array([2, 0, 1])
    assert labels_in_use(labels, 0.0) is None
    np.testing.assert_array_equal(distillation_targets(LOGITS, labels_in_use(labels, 0.0), 3).argmax(axis=1),
                                  distillation_targets(LOGITS, None, 3).argmax(axis=1))


def test_plan_fraction_keeps_that_many_of_the_held_labels_and_never_invents_one() -> None:
    labels = np.array([UNLABELLED, 3, 1, UNLABELLED, 0, 2, 2, 1, 0, 3])
    got = labels_in_use(labels, 0.3)
    np.testing.assert_array_equal(got, [UNLABELLED, 3, 1, UNLABELLED, 0] + [UNLABELLED] * 5)
    np.testing.assert_array_equal(labels_in_use(labels, 1.0), labels)
    assert labels_in_use(None, 0.5) is None
