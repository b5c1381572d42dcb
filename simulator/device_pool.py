"""Device data for a fleet of any size: every device draws its samples, with replacement, from one pool.

The Dirichlet partition (simulator.data.dirichlet_partition) gives every device its own examples, so a
data set of n examples serves at most n / min_size devices (digits: about 100; ItalyPowerDemand: about 60).
Pool sampling serves any number: device i draws its label distribution p_i ~ Dirichlet(alpha) over the
data set's classes, then `samples` examples from the pool, each one's class from p_i and the example
uniformly (with replacement) among the pool's examples of that class. Devices therefore share examples
and a device may hold one example twice; what differs between devices, as in the partition, is the mix
of labels. A class the pool does not hold cannot be drawn: p_i is renormalised over the classes the
pool holds (for a Dirichlet this is exactly Dirichlet(alpha) over those classes); should every class
the pool holds have probability 0 in p_i (a float underflow at tiny alpha), the device draws them
uniformly.

The held-out data stays honest (simulator.data.federated_split): the device part of the data is split,
per class, into a training pool and a held-out pool, and every device draws its training samples from
the first and its held-out samples from the second with the same p_i; no device's held-out example is
any device's training example, and the cloud and test splits are outside both pools.

Randomness is a parameter (a numpy Generator); the functions return index arrays into the pool, so the
caller copies each example once (simulator.data.federated_split: one array of devices x samples rows,
every device's data a view of its rows).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DeviceSampling(enum.Enum):
    """How devices get their data: `--device-sampling`."""

    AUTO = "auto"  # PARTITION when the device part of the data suffices (pool_suffices), else POOL
    PARTITION = "partition"  # disjoint Dirichlet shares of the device part (simulator.data.dirichlet_partition)
    POOL = "pool"  # draws with replacement from the device pool (this module)

    @classmethod
    def parse(cls, text: str | DeviceSampling) -> DeviceSampling:
        if isinstance(text, DeviceSampling):
            return text
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"--device-sampling must be one of {', '.join(m.value for m in cls)}, "
                             f"got {text!r}") from None


@dataclass(frozen=True)
class SamplingFacts:
    """What scheme a split used and how much data it had (metrics.json `device_sampling`)."""

    scheme: str  # "partition" or "pool": AUTO resolved
    requested: str  # what --device-sampling asked for
    device_part_examples: int  # examples outside the cloud and test splits
    samples_per_device: int | None  # pool: every device's training samples (partition: they vary)
    holdout_per_device: int | None  # pool: every device's held-out samples
    training_pool_examples: int | None = None  # pool: the distinct examples devices train on
    holdout_pool_examples: int | None = None  # pool: the distinct examples devices are evaluated on

    def describe(self, devices: int) -> str:
        """One status line."""
        if self.scheme == "partition":
            return (f"device data: {self.device_part_examples} examples partitioned over {devices} devices "
                    f"(Dirichlet shares, no example on two devices; --device-sampling {self.requested})")
        return (f"device data: {devices} devices draw {self.samples_per_device} training and "
                f"{self.holdout_per_device} held-out examples each, with replacement, by their own Dirichlet "
                f"label mix from a pool of {self.training_pool_examples} (held-out pool: "
                f"{self.holdout_pool_examples}, never trained on; --device-sampling {self.requested})")


def holdout_size(samples: int, holdout_fraction: float) -> int:
    """Held-out samples beside `samples` training ones so that they are `holdout_fraction` of the device's
    data, as in the partition (at least 1 when the fraction is positive): 8 beside 32 at 0.2."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"device holdout fraction must be in [0, 1), got {holdout_fraction}")
    if holdout_fraction == 0:
        return 0
    return max(1, int(round(samples * holdout_fraction / (1.0 - holdout_fraction))))


def pool_suffices(device_part: int, devices: int, samples: int, holdout: int) -> bool:
    """AUTO's rule: partition when the device part holds, on average, as many examples per device as pool
    sampling would give each (samples + holdout); digits at 32 + 8: up to 20 devices."""
    return device_part >= devices * (samples + holdout)


def resolve(mode: DeviceSampling, device_part: int, devices: int, samples: int, holdout: int) -> DeviceSampling:
    """PARTITION or POOL: AUTO decided by pool_suffices (by sizes alone, so every seed gets the same scheme)."""
    if mode is not DeviceSampling.AUTO:
        return mode
    return DeviceSampling.PARTITION if pool_suffices(device_part, devices, samples, holdout) else DeviceSampling.POOL


def label_distributions(num_devices: int, num_classes: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(num_devices, num_classes): every device's p_i ~ Dirichlet(alpha), one row each."""
    if num_devices < 1:
        raise ValueError(f"--devices must be at least 1, got {num_devices}")
    if num_classes < 1:
        raise ValueError(f"the data must hold at least one class, got {num_classes}")
    if not alpha > 0:
        raise ValueError(f"--dirichlet-alpha must be positive, got {alpha}")
    return rng.dirichlet(np.full(num_classes, float(alpha)), size=num_devices)


def split_pool(y: np.ndarray, holdout_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions into y of the training pool and the held-out pool: per class, round(holdout_fraction * n_c)
    examples go to the held-out pool (a class of 1 or 2 examples at 0.2 stays out of it), the rest to training.
    Both sorted; disjoint; together every position."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"device holdout fraction must be in [0, 1), got {holdout_fraction}")
    held = []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        held.append(idx[:int(round(holdout_fraction * len(idx)))])
    hold = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(y)), hold, assume_unique=True)
    return train, hold


def pool_sample(y: np.ndarray, label_dists: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(num_devices, samples) positions into y: row i holds device i's draws, classes from label_dists[i]
    (renormalised over the classes y holds; see the module docstring), examples uniform within the class,
    with replacement, in random order."""
    if samples < 1:
        raise ValueError(f"--samples-per-device must be at least 1, got {samples}")
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("the device pool is empty: lower --cloud-fraction so that some data is left for devices")
    n, c = label_dists.shape
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels must be in 0..{c - 1} (the label distributions' classes), got {y.min()}..{y.max()}")
    sizes = np.bincount(y, minlength=c)
    present = sizes > 0
    p = label_dists * present
    mass = p.sum(axis=1, keepdims=True)
    p = np.where(mass > 0, p / np.where(mass > 0, mass, 1.0), present / present.sum())
    counts = rng.multinomial(samples, p)  # (n, c): how many of each class every device draws
    by_class = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cls = np.repeat(np.tile(np.arange(c), n), counts.ravel())  # device-major, class-sorted within a device
    picks = by_class[starts[cls] + rng.integers(0, sizes[cls])]
    return rng.permuted(picks.reshape(n, samples), axis=1)
