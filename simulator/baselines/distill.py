"""Distillation into the fleet student, in-process: DMSKD (planned shards) and FedKD (full teacher).

A short driver of the round engine (cloud/round_engine.py) over the in-memory transport
(simulator/in_process.py): every device is a StudentClient running the device code of
edge.agent.DeviceAgent (the int8 shard in LiteRT once, then train_round on the LiteRT student
each round), so admission, aggregation, accounting and seeding are those of the MQTT run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
                     devices: list[Dataset], shards: list[DeviceShard] | None, test: Dataset,
                     settings: BaselineSettings, student_flops_per_sample: int,
                     on_round: Callable[[int, float], None] | None = None,
                     device_holdout: list[Dataset] | None = None) -> MethodResult:
    """Federate the student over `devices`, device i distilling from shards[i].

    shards None: FedAvg of the student itself on the devices' labels (no shard, no KD: alpha must be 1);
    devices without labels sit it out."""
    if shards is not None and len(shards) != len(devices):
        raise ValueError(f"{len(devices)} devices but {len(shards)} shards; give every device one shard")
    if shards is None and settings.training.alpha != 1.0:
        raise ValueError("FedAvg of the student without shards trains on labels only: use alpha = 1")
    started = time.monotonic()
    agg = settings.aggregation
    student = TrainableStudent.from_bytes(student_program)
    seeds = FleetSeeds.from_seed(settings.seed, len(devices))
    runners = {s.shard_id: ShardRunner.from_bytes(s.model) for s in shards or []}
    clients = {}
    for i, (data, seed) in enumerate(zip(devices, seeds.devices)):
        shard = shards[i] if shards is not None else None
        if shard is None:
            data = data.labelled_only()
            if len(data) == 0:
                continue
            logits = np.zeros((len(data), student.num_classes), np.float32)
        else:
            logits = runners[shard.shard_id].logits(data.x)
        plan = DevicePlan(settings.fleet, f"dev{i:03d}", shard.shard_id if shard else "none",
                          content_hash(shard.model) if shard else "-", content_hash(student_program),
                          settings.rounds, agg.dp_mode.value, agg.noise_multiplier, settings.training)
        clients[plan.device] = StudentClient.from_shard_logits(plan, student, data.x, data.visible_labels(), logits,
                                                               seed)
    if not clients:
        raise NoLabelledDevices(f"{method} trains on the devices' labels and no device holds any; "
                                f"pass --device-labels with a fraction above 0 to run it")
    evaluate = student_evaluator(student, test.x, test.y, [(h.x, h.y) for h in device_holdout or []])
    engine = RoundEngine(EngineConfig(settings.fleet, tuple(clients), settings.rounds, agg, settings.delta), evaluate)
    state = engine.init(initial_weights, seeds.server)
    first = evaluate(state.weights)
    shard_flops = [s.flops_per_sample for s in shards] if shards is not None else [0] * len(devices)
    result = MethodResult(
        method, first["accuracy"],
        one_off_bytes=sum(len(s.model) for s in shards or []) + len(clients) * len(student_program),
        flops_per_epoch_mean=float(np.mean([(f + 3 * student_flops_per_sample) * len(d)
                                            for f, d in zip(shard_flops, devices)])),
        noise_multiplier=agg.noise_multiplier if agg.dp_mode is not DpMode.NONE else 0.0,
        params=int(sum(w.size for w in initial_weights.values())),
        initial_device_accuracy=first.get("device_accuracy", float("nan")))

    def report(record: RoundRecord) -> None:
        if on_round:
            on_round(record.round, record.metrics["accuracy"])

    run = run_rounds(engine, state, clients, report)
    result.record_run(run)
    result.wall_seconds = time.monotonic() - started
    return result
