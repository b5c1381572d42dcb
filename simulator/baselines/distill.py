"""Distillation into the fleet student, in-process: DMSKD (planned shards) and FedKD (full teacher).

A short driver of the round engine (cloud/round_engine.py) over the in-memory transport
(simulator/in_process.py): every device is a StudentClient running the device code of
edge.agent.DeviceAgent (the int8 shard in LiteRT once, then train_round on the LiteRT student
each round), so admission, aggregation, accounting and seeding are those of the MQTT run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cloud.evaluation import student_evaluator
from cloud.round_engine import EngineConfig, RoundEngine, RoundRecord
from cloud.strategy import DpMode
from edge.plan import DevicePlan
from edge.seeding import FleetSeeds
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from edge.wire import content_hash
from simulator.baselines.result import MethodResult
from simulator.baselines.settings import BaselineSettings, NoLabelledDevices
from simulator.data import Dataset
from simulator.in_process import StudentClient, run_rounds


@dataclass(frozen=True)
class DeviceShard:
    """The shard one device runs: its id, int8 TFLite bytes and forward FLOPs per sample."""

    shard_id: str
    model: bytes
    flops_per_sample: int


def run_distillation(method: str, student_program: bytes, initial_weights: dict[str, np.ndarray],
                     devices: list[Dataset], shards: list[DeviceShard], test: Dataset,
                     settings: BaselineSettings, student_flops_per_sample: int,
                     on_round: Callable[[int, float], None] | None = None,
                     device_holdout: list[Dataset] | None = None) -> MethodResult:
    """Federate the student over `devices`, device i distilling from shards[i] (DMSKD, FedKD, their ablations)."""
    if len(shards) != len(devices):
        raise ValueError(f"{len(devices)} devices but {len(shards)} shards; give every device one shard")
    student = TrainableStudent.from_bytes(student_program)
    runners = {s.shard_id: ShardRunner.from_bytes(s.model) for s in shards}
    members = [(i, data, runners[shard.shard_id].logits(data.x), shard) for i, (data, shard)
               in enumerate(zip(devices, shards))]
    flops = float(np.mean([(s.flops_per_sample + 3 * student_flops_per_sample) * len(d)
                           for s, d in zip(shards, devices)]))
    return _federate(method, student_program, student, initial_weights, members, len(devices), test, settings,
                     flops, sum(len(s.model) for s in shards), on_round, device_holdout)


def run_student_fedavg(method: str, student_program: bytes, initial_weights: dict[str, np.ndarray],
                       devices: list[Dataset], test: Dataset, settings: BaselineSettings,
                       student_flops_per_sample: int, on_round: Callable[[int, float], None] | None = None,
                       device_holdout: list[Dataset] | None = None) -> MethodResult:
    """FedAvg of the student itself on the devices' labels: no shard, no KD (alpha must be 1); devices
    without labels sit it out."""
    if settings.training.alpha != 1.0:
        raise ValueError("FedAvg of the student without shards trains on labels only: use alpha = 1")
    student = TrainableStudent.from_bytes(student_program)
    members = []
    for i, data in enumerate(devices):
        labelled = data.labelled_only()
        if len(labelled):
            members.append((i, labelled, np.zeros((len(labelled), student.num_classes), np.float32), None))
    if not members:
        raise NoLabelledDevices(f"{method} trains on the devices' labels and no device holds any; "
                                f"pass --device-labels with a fraction above 0 to run it")
    flops = float(np.mean([3 * student_flops_per_sample * len(d) for d in devices]))
    return _federate(method, student_program, student, initial_weights, members, len(devices), test, settings,
                     flops, 0, on_round, device_holdout)


Member = tuple[int, Dataset, np.ndarray, "DeviceShard | None"]  # device index, data, shard logits, shard


def _federate(method: str, student_program: bytes, student: TrainableStudent,
              initial_weights: dict[str, np.ndarray], members: Sequence[Member],
              num_devices: int, test: Dataset, settings: BaselineSettings, flops_per_epoch_mean: float,
              shard_bytes: int, on_round: Callable[[int, float], None] | None,
              device_holdout: list[Dataset] | None) -> MethodResult:
    """Run the round engine over the members (device index, data, shard logits, shard) and record the result."""
    started = time.monotonic()
    agg = settings.aggregation
    seeds = FleetSeeds.from_seed(settings.seed, num_devices)
    clients = {}
    for i, data, logits, shard in members:
        plan = DevicePlan(settings.fleet, f"dev{i:03d}", shard.shard_id if shard else "none",
                          content_hash(shard.model) if shard else "-", content_hash(student_program),
                          settings.rounds, agg.dp_mode.value, agg.noise_multiplier, settings.training)
        clients[plan.device] = StudentClient.from_shard_logits(
            plan, student, data.x, data.visible_labels(), logits, seeds.devices[i],
            insecure_seeded_noise=settings.insecure_seeded_noise)
    evaluate = student_evaluator(student, test.x, test.y, [(h.x, h.y) for h in device_holdout or []])
    engine = RoundEngine(EngineConfig(settings.fleet, tuple(clients), settings.rounds, agg, settings.delta,
                                      insecure_seeded_noise=settings.insecure_seeded_noise), evaluate)
    state = engine.init(initial_weights, seeds.server)
    first = evaluate(state.weights)
    result = MethodResult(
        method, first["accuracy"], one_off_bytes=shard_bytes + len(clients) * len(student_program),
        flops_per_epoch_mean=flops_per_epoch_mean,
        noise_multiplier=agg.noise_multiplier if agg.dp_mode is not DpMode.NONE else 0.0,
        params=int(sum(w.size for w in initial_weights.values())),
        initial_device_accuracy=first.get("device_accuracy", float("nan")))

    def report(record: RoundRecord) -> None:
        if on_round:
            on_round(record.round, record.metrics["accuracy"])

    run = run_rounds(engine, state, clients, report, settings.fan_out)
    result.record_run(run)
    result.wall_seconds = time.monotonic() - started
    return result
