"""FedAvg over clipped student deltas, with the noise of `central` DP mode added by the server.

Pure values in and out; the round engine (cloud/round_engine.py) is the only caller on every path.
DP noise is the discrete Gaussian on a grid (`edge.privacy.DiscreteGaussianMechanism`, in both
modes), drawn from the `NoiseSource` the caller passes: OS entropy in deployments, a seed only when
the run asked for it by name. Its release is accounted as the Gaussian event of equal Renyi
divergences (`release_event`). `GaussianSumMechanism` is the float Gaussian with TF-Privacy's
`GaussianSumQuery` semantics (tests/cloud/test_strategy.py checks both agree), used only where a
seeded simulation asks for `float_noise` to measure what the discrete noise costs: its numpy noise
is predictable and floating-point.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import dp_accounting
import numpy as np

from edge.noise_source import InsecureSeededNoise, NoiseSource
from edge.privacy import DiscreteGaussianMechanism, clip_update


class DpMode(enum.StrEnum):
    """Where Gaussian noise is added (DESIGN.md §1)."""

    NONE = "none"
    LOCAL = "local"
    CENTRAL = "central"

    @classmethod
    def parse(cls, text: str) -> DpMode:
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown DP mode {text!r}; choose one of none, local, central") from None


@dataclass(frozen=True)
class AcceptedUpdate:
    """A validated device delta ready for averaging."""

    device: str
    delta: dict[str, np.ndarray]
    num_examples: int


@dataclass(frozen=True)
class FedAvgConfig:
    """How to combine updates: DP mode, clip C, noise multiplier z (added by the server in central
    mode, by the devices in local mode), server learning rate."""

    dp_mode: DpMode = DpMode.NONE
    clip: float = 1.0
    noise_multiplier: float = 0.0
    server_lr: float = 1.0
    float_noise: bool = False  # central: GaussianSumMechanism's float noise, what the grid costs (seeded runs only)


@dataclass(frozen=True)
class AggregateResult:
    """New global weights, how many updates made them, and the privacy event of the release (or None)."""

    weights: dict[str, np.ndarray]
    num_updates: int
    dp_event: dp_accounting.DpEvent | None = None

    @property
    def noised(self) -> bool:
        return self.dp_event is not None


@dataclass(frozen=True)
class GaussianSumMechanism:
    """Sum of records clipped to L2 norm `clip`, plus N(0, (noise_multiplier * clip)^2) noise."""

    clip: float
    noise_multiplier: float

    def initial_sample_state(self, template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.zeros(np.shape(v), np.float64) for n, v in template.items()}

    def accumulate_record(self, state: dict[str, np.ndarray], record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clipped, _ = clip_update(record, self.clip)
        return {n: state[n] + clipped[n] for n in state}

    def get_noised_result(self, state: dict[str, np.ndarray], rng: np.random.Generator
                          ) -> tuple[dict[str, np.ndarray], dp_accounting.DpEvent]:
        stddev = self.noise_multiplier * self.clip
        noised = {n: state[n] + rng.normal(0.0, stddev, size=np.shape(state[n])) for n in sorted(state)}
        return noised, dp_accounting.GaussianDpEvent(self.noise_multiplier)


def _float_noised_sum(global_weights: dict[str, np.ndarray], updates: list[AcceptedUpdate], config: FedAvgConfig,
                      noise: NoiseSource) -> tuple[dict[str, np.ndarray], dp_accounting.DpEvent]:
    """The clipped sum plus float Gaussian noise from a seeded source: the comparison point, never a deployment."""
    if not isinstance(noise, InsecureSeededNoise):
        raise ValueError("float Gaussian noise is for seeded comparisons only (numpy's Gaussian is no secure "
                         "sampler); run with --insecure-seeded-noise, or drop --float-noise")
    mechanism = GaussianSumMechanism(config.clip, config.noise_multiplier)
    state = mechanism.initial_sample_state(global_weights)
    for u in updates:
        state = mechanism.accumulate_record(state, u.delta)
    return mechanism.get_noised_result(state, noise.generator)


def release_event(config: FedAvgConfig, dimension: int) -> dp_accounting.DpEvent:
    """One round's privacy event: the discrete Gaussian of `config` on `dimension` coordinates, as the
    Gaussian event with the same Renyi divergences (edge.privacy.DiscreteGaussianMechanism); with
    `float_noise`, the Gaussian event itself."""
    if config.float_noise:
        return dp_accounting.GaussianDpEvent(config.noise_multiplier)
    mechanism = DiscreteGaussianMechanism(config.clip, config.noise_multiplier, dimension)
    return dp_accounting.GaussianDpEvent(mechanism.effective_noise_multiplier)


def aggregate(global_weights: dict[str, np.ndarray], updates: list[AcceptedUpdate], config: FedAvgConfig,
              noise: NoiseSource | None = None, expected_count: float | None = None) -> AggregateResult:
    """theta + server_lr * mean of deltas (example-weighted only when DP is off); `noise` draws central noise.

    In `central` mode the noised sum is divided by `expected_count`, the expected cohort size (a fixed
    denominator, as TF-Privacy's NormalizedQuery: dividing by the realised count would reveal it), and
    the noise is released even for a round with no update, so that an empty round is not told apart.
    In `local` mode every update is already private and the mean over those received is post-processing."""
    names = sorted(global_weights)
    dimension = int(sum(np.size(global_weights[n]) for n in names))
    event: dp_accounting.DpEvent | None = None
    if config.dp_mode is DpMode.CENTRAL:
        if noise is None:
            raise ValueError("central DP needs a noise source (edge.noise_source.SecureNoise in a deployment)")
        if expected_count is None or not expected_count > 0:
            raise ValueError(f"central DP divides by the expected cohort size; got {expected_count}")
        if config.float_noise:
            noised_sum, event = _float_noised_sum(global_weights, updates, config, noise)
        else:
            mechanism = DiscreteGaussianMechanism(config.clip, config.noise_multiplier, dimension)
            grid_sum = {n: np.zeros(np.shape(global_weights[n]), np.int64) for n in names}
            for u in updates:
                on_grid = mechanism.to_grid(clip_update(u.delta, config.clip)[0], noise)
                grid_sum = {n: grid_sum[n] + on_grid[n] for n in names}
            noised_sum = mechanism.noised(grid_sum, noise)
            event = release_event(config, dimension)
        mean = {n: noised_sum[n] / expected_count for n in names}
    elif not updates:
        raise ValueError("cannot aggregate a round with no accepted updates")
    elif config.dp_mode is DpMode.LOCAL:
        mean = {n: np.mean([u.delta[n] for u in updates], axis=0) for n in names}
        event = release_event(config, dimension)  # each device noised its own release
    else:
        total = sum(u.num_examples for u in updates)
        mean = {n: sum((u.delta[n] * (u.num_examples / total) for u in updates),
                       np.zeros(np.shape(global_weights[n]), np.float32)) for n in names}
    new = {n: (global_weights[n] + config.server_lr * mean[n]).astype(np.float32) for n in names}
    return AggregateResult(new, len(updates), event)
