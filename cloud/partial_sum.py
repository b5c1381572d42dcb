"""The running sum of a round's accepted updates: FedAvg's state, the same size whatever the count.

An aggregator folds each update in as it is admitted (`PartialSum.add`) and keeps nothing else of
it, so memory does not grow with the number of updates in a round. Sums over disjoint sets of
devices combine exactly as one sum over their union (`merge`): the aggregator workers of a sharded
deployment and the gateways of a hierarchical one each keep one and a reducer merges them. What is
summed depends on the DP mode:

- `none`: sum of n_i * delta_i and sum of n_i (the example-weighted mean), float64;
- `local`: sum of delta_i and the count (each release is already private; the mean is post-processing);
- `central`: sum of the clipped deltas on the discrete-Gaussian grid, as int64 (exact, so any grouping
  gives the same bits), or with `float_noise` the float64 sum of clipped deltas.

The grid rounding of a `central` update is randomized; the caller passes the `NoiseSource` it draws
from: OS entropy in a deployment, or in a seeded run one keyed by the device (`device_rounding_noise`)
so that the result does not depend on the order updates arrive in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from cloud.aggregation_settings import AcceptedUpdate, DpMode, FedAvgConfig
from edge.noise_source import InsecureSeededNoise, NoiseSource
from edge.privacy import DiscreteGaussianMechanism, clip_update
from edge.seeding import spawned_child

ROUNDING_STREAM = 2  # child index, under the server's round child, of the per-device grid-rounding streams


@dataclass
class PartialSum:
    """Sum of the updates of some devices of one round, in the form `config`'s DP mode needs (module docstring)."""

    config: FedAvgConfig
    dimension: int
    total: dict[str, np.ndarray] = field(repr=False)
    weight: int = 0  # sum of example counts (`none`) or the number of updates (`local`, `central`)
    count: int = 0
    devices: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, template: dict[str, tuple[int, ...]], config: FedAvgConfig) -> PartialSum:
        """No update yet, for a model of `template`'s tensor shapes."""
        on_grid = config.dp_mode is DpMode.CENTRAL and not config.float_noise
        dtype = np.int64 if on_grid else np.float64
        total = {name: np.zeros(shape, dtype) for name, shape in sorted(template.items())}
        return cls(config, int(sum(v.size for v in total.values())), total)

    @property
    def on_grid(self) -> bool:
        return self.config.dp_mode is DpMode.CENTRAL and not self.config.float_noise

    def add(self, update: AcceptedUpdate, rounding: NoiseSource | None = None) -> None:
        """Fold one admitted update in; `rounding` draws the grid rounding of a `central` update."""
        if update.device in self.devices:
            raise ValueError(f"{update.device} is already in this sum; an update counts once per round")
        mode = self.config.dp_mode
        if mode is DpMode.CENTRAL:
            clipped, _ = clip_update(update.delta, self.config.clip)
            if self.on_grid:
                if rounding is None:
                    raise ValueError("a central-mode update is rounded onto the grid at random; pass a NoiseSource")
                mechanism = DiscreteGaussianMechanism(self.config.clip, self.config.noise_multiplier, self.dimension)
                contribution = mechanism.to_grid(clipped, rounding)
            else:
                contribution = {n: np.asarray(v, np.float64) for n, v in clipped.items()}
            self.weight += 1
        elif mode is DpMode.LOCAL:
            contribution = {n: np.asarray(v, np.float64) for n, v in update.delta.items()}
            self.weight += 1
        else:
            contribution = {n: np.asarray(v, np.float64) * update.num_examples for n, v in update.delta.items()}
            self.weight += update.num_examples
        for name in self.total:
            self.total[name] += contribution[name]
        self.count += 1
        self.devices.add(update.device)

    def merge(self, other: PartialSum) -> PartialSum:
        """The sum over both sets of devices (they must be disjoint: a device counts once)."""
        if other.config != self.config or other.dimension != self.dimension:
            raise ValueError("partial sums of different aggregation settings or models cannot be merged")
        both = self.devices & other.devices
        if both:
            raise ValueError(f"partial sums overlap in {sorted(both)[:5]}: a device's update would count twice")
        total = {name: self.total[name] + other.total[name] for name in self.total}
        return PartialSum(self.config, self.dimension, total, self.weight + other.weight, self.count + other.count,
                          self.devices | other.devices)


def device_rounding_noise(server_seed: np.random.SeedSequence, round_: int, device: str) -> InsecureSeededNoise:
    """A seeded run's grid rounding for `device`'s update in `round_`: keyed by the device, not by arrival order."""
    key = int.from_bytes(hashlib.sha256(device.encode()).digest()[:8], "big")
    stream = spawned_child(spawned_child(spawned_child(server_seed, round_), ROUNDING_STREAM), key)
    return InsecureSeededNoise(np.random.default_rng(stream))
