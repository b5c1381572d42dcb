"""Bundled data (scikit-learn digits) and the splits a federated run needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images in [0, 1] as (N, H, W, 1) float32 and integer labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.x[idx], self.y[idx])


@dataclass(frozen=True)
class FederatedSplit:
    """Cloud (proxy) data for the teacher, held-out test data, and one shard per device."""

    cloud: Dataset
    test: Dataset
    devices: list[Dataset]


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


def federated_split(data: Dataset, num_devices: int, seed: int, cloud_fraction: float = 0.35,
                    test_fraction: float = 0.2, alpha: float = 1.0, min_size: int = 8) -> FederatedSplit:
    """Shuffle once, carve cloud and test splits, Dirichlet-partition the rest over devices."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_cloud = int(round(cloud_fraction * len(data)))
    n_test = int(round(test_fraction * len(data)))
    cloud, test, rest = order[:n_cloud], order[n_cloud:n_cloud + n_test], order[n_cloud + n_test:]
    device_data = data.take(rest)
    parts = dirichlet_partition(device_data.y, num_devices, alpha, rng, min_size)
    return FederatedSplit(data.take(cloud), data.take(test), [device_data.take(p) for p in parts])
