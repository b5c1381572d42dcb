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

from dataclasses import dataclass

import dp_accounting
import numpy as np

from cloud.aggregation_settings import AcceptedUpdate, DpMode, FedAvgConfig
from cloud.partial_sum import PartialSum
from edge.noise_source import InsecureSeededNoise, NoiseSource
from edge.privacy import DiscreteGaussianMechanism, clip_update


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
    """`finish` over the sum of `updates`, folded in order (grid rounding drawn from `noise`, as the release)."""
    if config.dp_mode is DpMode.CENTRAL:
        _require_noise(noise)
    partial = PartialSum.empty({n: np.shape(v) for n, v in global_weights.items()}, config)
    for u in updates:
        partial.add(u, noise)
    return finish(global_weights, partial, config, noise, expected_count)


def finish(global_weights: dict[str, np.ndarray], partial: PartialSum, config: FedAvgConfig,
           noise: NoiseSource | None = None, expected_count: float | None = None) -> AggregateResult:
    """theta + server_lr * mean of the summed deltas (example-weighted only when DP is off); `noise` draws
    central noise.

    In `central` mode the noised sum is divided by `expected_count`, the expected cohort size (a fixed
    denominator, as TF-Privacy's NormalizedQuery: dividing by the realised count would reveal it), and
    the noise is released even for a round with no update, so that an empty round is not told apart.
    In `local` mode every update is already private and the mean over those received is post-processing."""
    if partial.config != config:
        raise ValueError("the partial sum was built under other aggregation settings than it is finished with")
    names = sorted(global_weights)
    event: dp_accounting.DpEvent | None = None
    if config.dp_mode is DpMode.CENTRAL:
        noise = _require_noise(noise)
        if expected_count is None or not expected_count > 0:
            raise ValueError(f"central DP divides by the expected cohort size; got {expected_count}")
        if config.float_noise:
            noised_sum, event = _float_noised(partial, config, noise)
        else:
            mechanism = DiscreteGaussianMechanism(config.clip, config.noise_multiplier, partial.dimension)
            noised_sum = mechanism.noised(partial.total, noise)
            event = release_event(config, partial.dimension)
        mean = {n: noised_sum[n] / expected_count for n in names}
    elif partial.count == 0:
        raise ValueError("cannot aggregate a round with no accepted updates")
    elif config.dp_mode is DpMode.LOCAL:
        mean = {n: partial.total[n] / partial.count for n in names}
        event = release_event(config, partial.dimension)  # each device noised its own release
    else:
        mean = {n: partial.total[n] / partial.weight for n in names}
    new = {n: (global_weights[n] + config.server_lr * mean[n]).astype(np.float32) for n in names}
    return AggregateResult(new, partial.count, event)


def _require_noise(noise: NoiseSource | None) -> NoiseSource:
    if noise is None:
        raise ValueError("central DP needs a noise source (edge.noise_source.SecureNoise in a deployment)")
    return noise


def _float_noised(partial: PartialSum, config: FedAvgConfig, noise: NoiseSource
                  ) -> tuple[dict[str, np.ndarray], dp_accounting.DpEvent]:
    """The clipped sum plus float Gaussian noise from a seeded source: the comparison point, never a deployment."""
    if not isinstance(noise, InsecureSeededNoise):
        raise ValueError("float Gaussian noise is for seeded comparisons only (numpy's Gaussian is no secure "
                         "sampler); run with --insecure-seeded-noise, or drop --float-noise")
    mechanism = GaussianSumMechanism(config.clip, config.noise_multiplier)
    return mechanism.get_noised_result(partial.total, noise.generator)
