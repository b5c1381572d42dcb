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
from simulator.baselines.settings import BaselineSettings
from simulator.data import Dataset
from simulator.in_process import StudentClient, run_rounds


@dataclass(frozen=True)
class DeviceShard:
    """The shard one device runs: its id, int8 TFLite bytes and forward FLOPs per sample."""

    shard_id: str
    model: bytes
    flops_per_sample: int


def run_distillation(method: str, student_program: bytes, initial_weights: dict[str, np.ndarray],
                     devices: list[Dataset], shards: list[DeviceShard], test: Dataset, settings: BaselineSettings,
                     student_flops_per_sample: int,
                     on_round: Callable[[int, float], None] | None = None) -> MethodResult:
    """Federate the student over `devices`, device i distilling from shards[i]."""
    if len(shards) != len(devices):
        raise ValueError(f"{len(devices)} devices but {len(shards)} shards; give every device one shard")
    started = time.monotonic()
    agg = settings.aggregation
    student = TrainableStudent.from_bytes(student_program)
    seeds = FleetSeeds.from_seed(settings.seed, len(devices))
    runners = {s.shard_id: ShardRunner.from_bytes(s.model) for s in shards}
    clients = {}
    for i, (shard, data, seed) in enumerate(zip(shards, devices, seeds.devices)):
        plan = DevicePlan(settings.fleet, f"dev{i:03d}", shard.shard_id, content_hash(shard.model),
                          content_hash(student_program), settings.rounds, agg.dp_mode.value, agg.noise_multiplier,
                          settings.training)
        clients[plan.device] = StudentClient.from_shard_logits(plan, student, data.x, data.y,
                                                               runners[shard.shard_id].logits(data.x), seed)
    evaluate = student_evaluator(student, test.x, test.y)
    engine = RoundEngine(EngineConfig(settings.fleet, tuple(clients), settings.rounds, agg, settings.delta), evaluate)
    state = engine.init(initial_weights, seeds.server)
    result = MethodResult(
        method, evaluate(state.weights)["accuracy"],
        one_off_bytes=sum(len(s.model) + len(student_program) for s in shards),
        flops_per_epoch_mean=float(np.mean([(s.flops_per_sample + 3 * student_flops_per_sample) * len(d)
                                            for s, d in zip(shards, devices)])),
        noise_multiplier=agg.noise_multiplier if agg.dp_mode is not DpMode.NONE else 0.0,
        params=int(sum(w.size for w in initial_weights.values())))

    def report(record: RoundRecord) -> None:
        if on_round:
            on_round(record.round, record.metrics["accuracy"])

    run = run_rounds(engine, state, clients, report)
    result.record_run(run)
    result.wall_seconds = time.monotonic() - started
    return result
