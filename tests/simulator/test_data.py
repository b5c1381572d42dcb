"""The federated split: label regimes on devices, each device's own held-out data, the cloud's share."""

from __future__ import annotations

import numpy as np
import pytest

from edge.local_training import UNLABELLED
from simulator.data import federated_split, load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 1.0], ids=["none", "tenth", "all"])
def test_every_device_labels_the_requested_share_of_its_training_samples(digits, fraction: float) -> None:
    split = federated_split(digits, 5, seed=3, labelled_fraction=fraction)
    for d in split.devices:
        assert d.num_labelled == int(round(fraction * len(d)))
        seen = d.visible_labels()
        assert np.sum(seen == UNLABELLED) == len(d) - d.num_labelled
        labelled = seen != UNLABELLED
        np.testing.assert_array_equal(seen[labelled], d.y[labelled])  # what it holds is the truth
        assert len(d.labelled_only()) == d.num_labelled


def test_device_holdout_is_disjoint_from_training_and_about_a_fifth(digits) -> None:
    split = federated_split(digits, 4, seed=0)
    for d, h in zip(split.devices, split.device_holdout):
        train = {x.tobytes() for x in d.x}
        assert not any(x.tobytes() in train for x in h.x)
        assert abs(len(h) - 0.2 * (len(d) + len(h))) <= 1
    total = len(split.cloud) + len(split.test) + sum(len(d) + len(h) for d, h in zip(split.devices,
                                                                                    split.device_holdout))
    assert total == len(digits)


def test_the_cloud_share_is_a_knob(digits) -> None:
    small = federated_split(digits, 4, seed=0, cloud_fraction=0.05)
    assert len(small.cloud) == round(0.05 * len(digits))
    with pytest.raises(ValueError, match="--cloud-fraction must be in"):
        federated_split(digits, 4, seed=0, cloud_fraction=0.9)


def test_a_bad_label_fraction_names_the_flag(digits) -> None:
    with pytest.raises(ValueError, match="--device-labels"):
        federated_split(digits, 4, seed=0, labelled_fraction=1.5)
