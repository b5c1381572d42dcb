"""FedAvg over clipped student deltas, with TF-Privacy's GaussianSumQuery in `central` mode.

Pure values in and out: the MQTT service (cloud/aggregator.py) and the in-process
simulator call the same `aggregate`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DpMode(str, enum.Enum):
    """Where Gaussian noise is added (DESIGN.md §1)."""

    NONE = "none"
    LOCAL = "local"
    CENTRAL = "central"

    @classmethod
    def parse(cls, text: str) -> "DpMode":
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
    """How to combine updates: DP mode, clip C, noise multiplier z, server learning rate."""

    dp_mode: DpMode = DpMode.NONE
    clip: float = 1.0
    noise_multiplier: float = 0.0
    server_lr: float = 1.0


@dataclass
class AggregateResult:
    """New global weights and what the round did."""

    weights: dict[str, np.ndarray]
    num_updates: int
    noised: bool
    dp_event: object | None = None


def aggregate(global_weights: dict[str, np.ndarray], updates: list[AcceptedUpdate], config: FedAvgConfig,
              seed: int = 0) -> AggregateResult:
    """theta + server_lr * mean of deltas (example-weighted only when DP is off)."""
    if not updates:
        raise ValueError("cannot aggregate a round with no accepted updates")
    names = sorted(global_weights)
    if config.dp_mode is DpMode.CENTRAL:
        mean, event = _central_dp_mean(names, updates, config, seed)
    elif config.dp_mode is DpMode.LOCAL:
        mean = {n: np.mean([u.delta[n] for u in updates], axis=0) for n in names}
        event = None
    else:
        total = sum(u.num_examples for u in updates)
        mean = {n: sum(u.delta[n] * (u.num_examples / total) for u in updates) for n in names}
        event = None
    new = {n: (global_weights[n] + config.server_lr * mean[n]).astype(np.float32) for n in names}
    return AggregateResult(new, len(updates), config.dp_mode is not DpMode.NONE, event)


def _central_dp_mean(names, updates, config, seed):
    """Sum through GaussianSumQuery (clip C, stddev z*C), divide by the count K."""
    import tensorflow as tf
    from tensorflow_privacy.privacy.dp_query.gaussian_query import GaussianSumQuery

    tf.random.set_seed(seed)
    query = GaussianSumQuery(l2_norm_clip=config.clip, stddev=config.noise_multiplier * config.clip)
    global_state = query.initial_global_state()
    params = query.derive_sample_params(global_state)
    template = [tf.zeros_like(updates[0].delta[n]) for n in names]
    sample_state = query.initial_sample_state(template)
    for u in updates:
        record = [tf.constant(u.delta[n]) for n in names]
        sample_state = query.accumulate_record(params, sample_state, record)
    noised_sum, _, event = query.get_noised_result(sample_state, global_state)
    return {n: noised_sum[i].numpy() / len(updates) for i, n in enumerate(names)}, event
