"""Bundled data (scikit-learn digits) and the splits a federated run needs.

A device's training data may carry labels for all, some or none of its samples (`labelled`);
what it sees of the unlabelled ones is edge.local_training.UNLABELLED, and it trains on the
shard's arg-max there. Every device also keeps a held-out part of its own data, never trained on:
the accuracy a household sees is measured there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.local_training import UNLABELLED


@dataclass(frozen=True)
class Dataset:
    """Images in [0, 1] as (N, H, W, 1) float32, their true labels, and which labels the holder has.

    labelled: a boolean mask (None: every label is known); y stays the truth, for evaluation."""

    x: np.ndarray
    y: np.ndarray
    labelled: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.x[idx], self.y[idx], None if self.labelled is None else self.labelled[idx])

    @property
    def num_labelled(self) -> int:
        return len(self) if self.labelled is None else int(self.labelled.sum())

    def visible_labels(self) -> np.ndarray:
        """The labels as the holder sees them: UNLABELLED where it has none."""
        if self.labelled is None:
            return self.y
        return np.where(self.labelled, self.y, UNLABELLED)

    def labelled_only(self) -> Dataset:
        """Only the samples whose label the holder has."""
        return self if self.labelled is None else self.take(np.flatnonzero(self.labelled))

    def with_labelled_fraction(self, fraction: float, rng: np.random.Generator) -> Dataset:
        """The same samples, round(fraction * n) of them (drawn by rng) labelled."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"--device-labels must be none, all or a fraction in [0, 1], got {fraction}")
        mask = np.zeros(len(self), bool)
        mask[rng.permutation(len(self))[:int(round(fraction * len(self)))]] = True
        return Dataset(self.x, self.y, mask)


@dataclass(frozen=True)
class FederatedSplit:
    """Cloud (proxy) data for the teacher, held-out test data, every device's training data and its
    own held-out data (true labels, never trained on)."""

    cloud: Dataset
    test: Dataset
    devices: list[Dataset]
    device_holdout: list[Dataset] = field(default_factory=list)
    device_shifts: list = field(default_factory=list)  # simulator.device_shift.ImageShift per device, if shifted


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    return Dataset(x, d.target.astype(np.int64))


def dirichlet_partition(y: np.ndarray, num_devices: int, alpha: float, rng: np.random.Generator,
                        min_size: int = 8) -> list[np.ndarray]:
    """Index sets per device with label proportions drawn from Dirichlet(alpha) (non-IID).

    Errors name the `python -m simulator run` flags that fix them (--devices, --dirichlet-alpha,
    --min-samples-per-device).
    """
    if num_devices < 1:
        raise ValueError(f"--devices must be at least 1, got {num_devices}")
    if not alpha > 0:
        raise ValueError(f"--dirichlet-alpha must be positive, got {alpha}")
    if len(y) < num_devices * min_size:
        if len(y) < min_size:
            raise ValueError(f"{len(y)} examples cannot give even one device {min_size}; pass "
                             f"--min-samples-per-device {len(y)} or less")
        raise ValueError(f"{len(y)} examples cannot give {num_devices} devices {min_size} each; "
                         f"pass --devices {len(y) // min_size} or fewer, or lower --min-samples-per-device")
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(num_devices)]
        for label in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == label))
            props = rng.dirichlet(np.full(num_devices, alpha))
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for dev, chunk in enumerate(np.split(idx, cuts)):
                parts[dev].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.array(sorted(p)) for p in parts]
    raise ValueError(f"--dirichlet-alpha {alpha:g} left one of {num_devices} devices with fewer than {min_size} "
                     f"examples in 100 draws; raise --dirichlet-alpha (1 is the default), pass fewer --devices "
                     f"or lower --min-samples-per-device")


TEST_FRACTION = 0.2  # of the data set: the test split every run reports on


def federated_split(data: Dataset, num_devices: int, seed: int, cloud_fraction: float = 0.35,
                    test_fraction: float = TEST_FRACTION, alpha: float = 1.0, min_size: int = 8,
                    labelled_fraction: float = 1.0, holdout_fraction: float = 0.2) -> FederatedSplit:
    """Shuffle once, carve cloud and test splits, Dirichlet-partition the rest over devices, keep a
    `holdout_fraction` of every device's data aside and label `labelled_fraction` of the rest."""
    if not 0.0 < cloud_fraction < 1.0 - test_fraction:
        raise ValueError(f"--cloud-fraction must be in (0, {1.0 - test_fraction:g}), got {cloud_fraction}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"device holdout fraction must be in [0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_cloud = int(round(cloud_fraction * len(data)))
    n_test = int(round(test_fraction * len(data)))
    cloud, test, rest = order[:n_cloud], order[n_cloud:n_cloud + n_test], order[n_cloud + n_test:]
    device_data = data.take(rest)
    parts = dirichlet_partition(device_data.y, num_devices, alpha, rng, min_size)
    train, holdout = [], []
    for part in parts:
        order = rng.permutation(part)
        n_hold = int(round(holdout_fraction * len(order)))
        holdout.append(device_data.take(np.sort(order[:n_hold])))
        train.append(device_data.take(np.sort(order[n_hold:])).with_labelled_fraction(labelled_fraction, rng))
    return FederatedSplit(data.take(cloud), data.take(test), train, holdout)
