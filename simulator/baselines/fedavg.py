"""FedAvg on the full multi-exit Keras teacher, trained from scratch on the devices' data.

Also FedCompress (uint8 update encoding) and DP-FedAvg (clip on device, central Gaussian noise):
a short driver of the round engine over the in-memory transport; only the client (`KerasClient`),
the update encoding and the aggregation config differ from DMSKD. Every round each device
decodes the float32 global-model payload, trains `local_epochs` epochs with Keras (Adam, its state
reset per device and round, as a fresh client optimiser; batches shuffled by the device's round
Generator, not TensorFlow's global seed), and uploads theta_local - theta_global. All exits are
trained (sum of per-exit cross-entropies, as the cloud trains the teacher); accuracy is the final
exit's on the test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cloud.profiler import forward_flops
from cloud.round_engine import EngineConfig, RoundEngine, RoundRecord
from cloud.strategy import DpMode
from cloud.teacher import compile_teacher, final_exit_accuracy, mean_device_accuracy
from edge.plan import TrainingSettings
from edge.privacy import clip_update
from edge.seeding import FleetSeeds, round_generator
from edge.update_quantization import update_tensors
from edge.wire import UpdateMeta, decode_weights, encode_update
from simulator.baselines.result import MethodResult
from simulator.baselines.settings import BaselineSettings, NoLabelledDevices
from simulator.data import Dataset
from simulator.in_process import run_rounds


def keras_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Weights keyed by their Keras names without the ':0' suffix (block1_conv/kernel, ...)."""
    out = {w.name.removesuffix(":0"): w.numpy().astype(np.float32) for w in model.weights}
    if len(out) != len(model.weights):
        raise ValueError("the model has duplicate weight names; name its layers uniquely")
    return out


def set_keras_weights(model: tf.keras.Model, weights: dict[str, np.ndarray]) -> None:
    model.set_weights([weights[w.name.removesuffix(":0")] for w in model.weights])


def local_train(model: tf.keras.Model, data: Dataset, training: TrainingSettings, rng: np.random.Generator) -> None:
    """Train all exits on one device's data, the optimiser's state reset first (a fresh client)."""
    for v in model.optimizer.variables:
        v.assign(tf.zeros_like(v))
    for _ in range(training.local_epochs):
        order = rng.permutation(len(data))
        model.fit(data.x[order], [data.y[order]] * len(model.outputs), epochs=1, batch_size=training.batch_size,
                  shuffle=False, verbose=0)


@dataclass
class KerasClient:
    """A device training the shared Keras `model` on its data and uploading its (clipped) delta."""

    device: str
    model: tf.keras.Model
    data: Dataset
    settings: BaselineSettings
    seed: np.random.SeedSequence

    def fit(self, model_payload: bytes, round_: int) -> bytes:
        received, meta = decode_weights(model_payload)
        set_keras_weights(self.model, received)
        local_train(self.model, self.data, self.settings.training, round_generator(self.seed, round_))
        delta = {k: (v - received[k]).astype(np.float32) for k, v in keras_weights(self.model).items()}
        agg = self.settings.aggregation
        dp = agg.dp_mode is not DpMode.NONE
        if dp:
            delta, _ = clip_update(delta, agg.clip)
        um = UpdateMeta(self.settings.fleet, self.device, round_, meta.version, len(self.data),
                        agg.clip if dp else 0.0, 0.0, agg.dp_mode.value, encoding=self.settings.encoding)
        return encode_update(update_tensors(delta, um.encoding), um)


def run_fedavg(method: str, model: tf.keras.Model, devices: list[Dataset], test: Dataset, settings: BaselineSettings,
               on_round: Callable[[int, float], None] | None = None,
               device_holdout: list[Dataset] | None = None) -> MethodResult:
    """Federate `model` (initial weights = its current ones) over `devices`; accuracy after every round."""
    started = time.monotonic()
    agg = settings.aggregation
    if agg.dp_mode is DpMode.LOCAL:
        raise ValueError("run_fedavg supports DP modes none and central")
    compile_teacher(model, settings.training.lr)
    seeds = FleetSeeds.from_seed(settings.seed, len(devices))
    clients = {f"dev{i:03d}": KerasClient(f"dev{i:03d}", model, d.labelled_only(), settings, s)
               for i, (d, s) in enumerate(zip(devices, seeds.devices)) if d.num_labelled > 0}
    if not clients:
        raise NoLabelledDevices(f"{method} trains on the devices' labels and no device holds any; "
                                f"pass --device-labels with a fraction above 0 to run it")

    def evaluate(weights: dict[str, np.ndarray]) -> dict[str, float]:
        set_keras_weights(model, weights)
        out = {"accuracy": final_exit_accuracy(model, test.x, test.y)}
        if device_holdout:
            out["device_accuracy"] = mean_device_accuracy(model, [(h.x, h.y) for h in device_holdout])
        return out

    config = EngineConfig(settings.fleet, tuple(clients), settings.rounds, agg, settings.delta,
                          bound_updates=agg.dp_mode is not DpMode.NONE, encodings=(settings.encoding,),
                          insecure_seeded_noise=settings.insecure_seeded_noise)
    engine = RoundEngine(config, evaluate)
    state = engine.init(keras_weights(model), seeds.server)
    first = evaluate(state.weights)
    result = MethodResult(method, first["accuracy"], initial_device_accuracy=first.get("device_accuracy", float("nan")),
                          flops_per_epoch_mean=float(np.mean([3 * forward_flops(model) * len(d) for d in devices])),
                          noise_multiplier=agg.noise_multiplier if agg.dp_mode is not DpMode.NONE else 0.0,
                          params=int(model.count_params()))

    def report(record: RoundRecord) -> None:
        if on_round:
            on_round(record.round, record.metrics["accuracy"])

    run = run_rounds(engine, state, clients, report)
    set_keras_weights(model, run.state.weights)
    result.record_run(run)
    result.wall_seconds = time.monotonic() - started
    return result
