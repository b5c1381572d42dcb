"""FedAvg on the full multi-exit Keras teacher, trained from scratch on the devices' data.

Also FedCompress (uint8 update encoding) and DP-FedAvg (clip on device, central Gaussian noise in
cloud.strategy.aggregate): the loop is the same, only the update encoding and FedAvgConfig differ.
Every round each device decodes the float32 global-model payload, trains `local_epochs` epochs with
Keras (Adam, its state reset per device and round, as a fresh client optimiser), and uploads
theta_local - theta_global; the server decodes every payload and averages with `aggregate`.
All exits are trained (sum of per-exit cross-entropies, as the cloud trains the teacher);
accuracy is the final exit's on the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf

from cloud.accounting import compute_epsilon
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, aggregate
from edge.privacy import clip_update
from edge.wire import FLOAT32_DELTA
from simulator.artifacts import forward_flops
from simulator.baselines.payloads import (global_model_payload, received_global_model, received_update,
                                          update_meta, update_payload)
from simulator.baselines.result import MethodResult
from simulator.data import Dataset


@dataclass(frozen=True)
class FedAvgSettings:
    """Local training and aggregation of one FedAvg-family run."""

    rounds: int
    local_epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 3e-3
    encoding: str = FLOAT32_DELTA
    aggregation: FedAvgConfig = field(default_factory=FedAvgConfig)
    delta: float = 1e-5
    seed: int = 0
    fleet: str = "compare"

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1:
            raise ValueError("rounds, local_epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


def keras_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Weights keyed by their Keras names without the ':0' suffix (block1_conv/kernel, ...)."""
    out = {w.name.removesuffix(":0"): w.numpy().astype(np.float32) for w in model.weights}
    if len(out) != len(model.weights):
        raise ValueError("the model has duplicate weight names; name its layers uniquely")
    return out


def set_keras_weights(model: tf.keras.Model, weights: dict[str, np.ndarray]) -> None:
    model.set_weights([weights[w.name.removesuffix(":0")] for w in model.weights])


def final_exit_accuracy(model: tf.keras.Model, data: Dataset) -> float:
    outs = model(data.x, training=False)
    last = outs[-1] if isinstance(outs, (list, tuple)) else outs
    return float(np.mean(np.argmax(last.numpy(), axis=1) == data.y))


def compile_for_local_training(model: tf.keras.Model, learning_rate: float) -> None:
    n = len(model.outputs)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=[tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * n)


def local_train(model: tf.keras.Model, data: Dataset, epochs: int, batch_size: int) -> None:
    """Train all exits on one device's data, the optimiser's state reset first (a fresh client)."""
    for v in model.optimizer.variables:
        v.assign(tf.zeros_like(v))
    model.fit(data.x, [data.y] * len(model.outputs), epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)


def run_fedavg(method: str, model: tf.keras.Model, devices: list[Dataset], test: Dataset, settings: FedAvgSettings,
               on_round: Callable[[int, float], None] | None = None) -> MethodResult:
    """Federate `model` (initial weights = its current ones) over `devices`; accuracy after every round."""
    started = time.monotonic()
    tf.keras.utils.set_random_seed(settings.seed)
    agg = settings.aggregation
    dp = agg.dp_mode is not DpMode.NONE
    if agg.dp_mode is DpMode.LOCAL:
        raise ValueError("run_fedavg supports DP modes none and central")
    compile_for_local_training(model, settings.learning_rate)
    global_w = keras_weights(model)
    result = MethodResult(method, final_exit_accuracy(model, test),
                          flops_per_epoch_mean=float(np.mean([3 * forward_flops(model) * len(d) for d in devices])),
                          noise_multiplier=agg.noise_multiplier if dp else 0.0, params=int(model.count_params()))
    for r in range(settings.rounds):
        down = global_model_payload(global_w, settings.fleet, r)
        received = received_global_model(down)
        updates, up_bytes = [], 0
        for i, data in enumerate(devices):
            set_keras_weights(model, received)
            local_train(model, data, settings.local_epochs, settings.batch_size)
            delta = {k: (v - received[k]).astype(np.float32) for k, v in keras_weights(model).items()}
            if dp:
                delta, _ = clip_update(delta, agg.clip)
            meta = update_meta(settings.fleet, f"dev{i:03d}", r, len(data), settings.encoding,
                               agg.clip if dp else 0.0, 0.0, agg.dp_mode.value)
            blob = update_payload(delta, meta)
            up_bytes += len(blob)
            tensors, got = received_update(blob)
            updates.append(AcceptedUpdate(got.device, tensors, got.num_examples))
        global_w = aggregate(global_w, updates, agg, seed=settings.seed * 100_003 + r).weights
        set_keras_weights(model, global_w)
        result.record_round(final_exit_accuracy(model, test), up_bytes, len(down) * len(devices))
        if on_round:
            on_round(r, result.accuracy_per_round[-1])
    if dp:
        result.epsilon = compute_epsilon(agg.noise_multiplier, 1.0, settings.rounds, settings.delta)
    result.wall_seconds = time.monotonic() - started
    return result
