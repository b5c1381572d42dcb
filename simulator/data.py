"""Bundled data (scikit-learn digits) and the splits a federated run needs.

A device's training data may carry labels for all, some or none of its samples (`labelled`);
what it sees of the unlabelled ones is edge.local_training.UNLABELLED, and it trains on the
shard's arg-max there. Every device also keeps a held-out part of its own data, never trained on:
the accuracy a household sees is measured there.

Devices get their data in one of two ways (`--device-sampling`, simulator.device_pool.DeviceSampling):
a Dirichlet partition of the device part of the data (every example on one device at most; the fleet is
limited by the data), or draws with replacement from a pool (any fleet size; simulator.device_pool).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from edge.local_training import UNLABELLED
from simulator import device_pool
from simulator.device_pool import DeviceSampling, SamplingFacts


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
    sampling: SamplingFacts | None = None  # how the devices got their data (None: built by hand)


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load

    d = sk_load()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    return Dataset(x, d.target.astype(np.int64))


def dirichlet_partition(y: np.ndarray, num_devices: int, alpha: float, rng: np.random.Generator,
                        min_size: int = 8) -> list[np.ndarray]:
    """Index sets per device with label proportions drawn from Dirichlet(alpha) (non-IID).

    Errors name the flags of the verbs that split data (run, compare, prepare, audit) that fix them
    (--devices, --dirichlet-alpha, --min-samples-per-device, --device-sampling).
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
                         f"pass --devices {len(y) // min_size} or fewer, lower --min-samples-per-device, or draw "
                         f"the devices' data with replacement (--device-sampling pool)")
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
                     f"examples in 100 draws; raise --dirichlet-alpha (1 is the default), pass fewer --devices, "
                     f"lower --min-samples-per-device, or draw with replacement (--device-sampling pool)")


TEST_FRACTION = 0.2  # of the data set: the test split every run reports on


def federated_split(data: Dataset, num_devices: int, seed: int, cloud_fraction: float = 0.35,
                    test_fraction: float = TEST_FRACTION, alpha: float = 1.0, min_size: int = 8,
                    labelled_fraction: float = 1.0, holdout_fraction: float = 0.2,
                    sampling: DeviceSampling | str = DeviceSampling.AUTO,
                    samples_per_device: int = 32) -> FederatedSplit:
    """Shuffle once, carve cloud and test splits, give the rest to the devices, label `labelled_fraction`
    of every device's training samples.

    sampling PARTITION: Dirichlet-partition the rest over the devices and keep a `holdout_fraction` of every
    device's share aside. POOL: split the rest per class into a training and a held-out pool, and let every
    device draw `samples_per_device` training examples and holdout_size(...) held-out ones from them
    (simulator.device_pool). AUTO: PARTITION when the rest holds that many per device, else POOL."""
    if not 0.0 < cloud_fraction < 1.0 - test_fraction:
        raise ValueError(f"--cloud-fraction must be in (0, {1.0 - test_fraction:g}), got {cloud_fraction}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"device holdout fraction must be in [0, 1), got {holdout_fraction}")
    if samples_per_device < 1:
        raise ValueError(f"--samples-per-device must be at least 1, got {samples_per_device}")
    requested = DeviceSampling.parse(sampling)
    n_hold = device_pool.holdout_size(samples_per_device, holdout_fraction)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_cloud = int(round(cloud_fraction * len(data)))
    n_test = int(round(test_fraction * len(data)))
    cloud, test, rest = order[:n_cloud], order[n_cloud:n_cloud + n_test], order[n_cloud + n_test:]
    device_data = data.take(rest)
    scheme = device_pool.resolve(requested, len(rest), num_devices, samples_per_device, n_hold)
    if scheme is DeviceSampling.POOL:
        train, holdout, facts = _pool_devices(data, device_data, num_devices, alpha, samples_per_device, n_hold,
                                              holdout_fraction, rng)
        train = [d.with_labelled_fraction(labelled_fraction, rng) for d in train]
        return FederatedSplit(data.take(cloud), data.take(test), train, holdout,
                              sampling=dataclasses.replace(facts, requested=requested.value))
    parts = dirichlet_partition(device_data.y, num_devices, alpha, rng, min_size)
    train, holdout = [], []
    for part in parts:
        order = rng.permutation(part)
        n_part_hold = int(round(holdout_fraction * len(order)))
        holdout.append(device_data.take(np.sort(order[:n_part_hold])))
        train.append(device_data.take(np.sort(order[n_part_hold:])).with_labelled_fraction(labelled_fraction, rng))
    return FederatedSplit(data.take(cloud), data.take(test), train, holdout,
                          sampling=SamplingFacts(scheme.value, requested.value, len(rest), None, None))


def _pool_devices(data: Dataset, device_data: Dataset, num_devices: int, alpha: float, samples: int, n_hold: int,
                  holdout_fraction: float, rng: np.random.Generator
                  ) -> tuple[list[Dataset], list[Dataset], SamplingFacts]:
    """Every device's training and held-out data drawn from the two pools (simulator.device_pool); each
    copied once into one array whose rows the devices' Datasets view."""
    num_classes = int(data.y.max()) + 1 if len(data) else 0
    dists = device_pool.label_distributions(num_devices, num_classes, alpha, rng)
    train_pool, hold_pool = device_pool.split_pool(device_data.y, holdout_fraction, rng)
    if len(train_pool) == 0:
        raise ValueError(f"no examples are left for the devices ({len(device_data)} outside the cloud and test "
                         f"splits); lower --cloud-fraction")
    train_idx = train_pool[device_pool.pool_sample(device_data.y[train_pool], dists, samples, rng)]
    train = _views(device_data.take(train_idx.ravel()), num_devices, samples)
    if n_hold and len(hold_pool):
        hold_idx = hold_pool[device_pool.pool_sample(device_data.y[hold_pool], dists, n_hold, rng)]
        holdout = _views(device_data.take(hold_idx.ravel()), num_devices, n_hold)
    else:
        n_hold = 0
        holdout = [device_data.take(np.zeros(0, np.int64)) for _ in range(num_devices)]
    facts = SamplingFacts(DeviceSampling.POOL.value, DeviceSampling.POOL.value, len(device_data), samples, n_hold,
                          len(train_pool), len(hold_pool))
    return train, holdout, facts


def _views(rows: Dataset, num_devices: int, per_device: int) -> list[Dataset]:
    """Device i's Dataset: rows i * per_device .. (i + 1) * per_device of `rows`, a view (no copy)."""
    return [Dataset(rows.x[i * per_device:(i + 1) * per_device], rows.y[i * per_device:(i + 1) * per_device])
            for i in range(num_devices)]
