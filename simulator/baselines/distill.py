"""Distillation into the fleet student, in-process: DMSKD (planned shards) and FedKD (full teacher).

The device side is what edge.agent.DeviceAgent does, without MQTT: run the int8 shard in LiteRT
once on the local data (ShardRunner), then every round decode the global student payload and
call edge.local_training.train_round on the LiteRT TrainableStudent (same per-device Generator
seeds as the agents: seed * 1000 + i). The server decodes every update payload and averages with
cloud.strategy.aggregate (central DP through its GaussianSumQuery when configured).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cloud.accounting import compute_epsilon
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig, aggregate
from edge.local_training import distillation_targets, train_round
from edge.plan import DevicePlan
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from edge.wire import content_hash
from simulator.baselines.payloads import (global_model_payload, received_global_model, received_update,
                                          update_meta, update_payload)
from simulator.baselines.result import MethodResult
from simulator.data import Dataset


@dataclass(frozen=True)
class DeviceShard:
    """The shard one device runs: its id, int8 TFLite bytes and forward FLOPs per sample."""

    shard_id: str
    model: bytes
    flops_per_sample: int


@dataclass(frozen=True)
class DistillSettings:
    """Local KD training (as DevicePlan) and aggregation of one distillation run."""

    rounds: int
    local_epochs: int = 3
    lr: float = 0.1
    alpha: float = 0.7
    tau: float = 2.0
    aggregation: FedAvgConfig = field(default_factory=lambda: FedAvgConfig(DpMode.NONE, clip=1.0))
    delta: float = 1e-5
    seed: int = 0
    fleet: str = "compare"


def device_plan(settings: DistillSettings, device: str, shard: DeviceShard, student_hash: str) -> DevicePlan:
    """The plan the aggregator would publish for this device (local DP is not used here)."""
    agg = settings.aggregation
    if agg.dp_mode is DpMode.LOCAL:
        raise ValueError("run_distillation supports DP modes none and central")
    return DevicePlan(settings.fleet, device, shard.shard_id, content_hash(shard.model), student_hash,
                      settings.rounds, agg.dp_mode.value, agg.clip, agg.noise_multiplier, settings.local_epochs,
                      settings.alpha, settings.tau, settings.lr)


def run_distillation(method: str, student_program: bytes, initial_weights: dict[str, np.ndarray],
                     devices: list[Dataset], shards: list[DeviceShard], test: Dataset, settings: DistillSettings,
                     student_flops_per_sample: int,
                     on_round: Callable[[int, float], None] | None = None) -> MethodResult:
    """Federate the student over `devices`, device i distilling from shards[i]."""
    if len(shards) != len(devices):
        raise ValueError(f"{len(devices)} devices but {len(shards)} shards; give every device one shard")
    started = time.monotonic()
    agg = settings.aggregation
    student = TrainableStudent.from_bytes(student_program)
    plans = [device_plan(settings, f"dev{i:03d}", s, content_hash(student_program)) for i, s in enumerate(shards)]
    rngs = [np.random.default_rng(settings.seed * 1000 + i) for i in range(len(devices))]
    runners = {sid: ShardRunner.from_bytes(model) for sid, model in {s.shard_id: s.model for s in shards}.items()}
    logits = [runners[s.shard_id].logits(d.x) for s, d in zip(shards, devices)]
    targets = [distillation_targets(z, d.y, student.num_classes) for z, d in zip(logits, devices)]
    flats = [d.x.reshape(len(d), -1) for d in devices]
    test_flat = test.x.reshape(len(test), -1)

    def accuracy(weights: dict[str, np.ndarray]) -> float:
        student.set_weights(weights)
        return student.accuracy(test_flat, test.y)

    global_w = dict(initial_weights)
    result = MethodResult(
        method, accuracy(global_w),
        one_off_bytes=sum(len(s.model) + len(student_program) for s in shards),
        flops_per_epoch_mean=float(np.mean([(s.flops_per_sample + 3 * student_flops_per_sample) * len(d)
                                            for s, d in zip(shards, devices)])),
        noise_multiplier=agg.noise_multiplier if agg.dp_mode is DpMode.CENTRAL else 0.0,
        params=int(sum(w.size for w in initial_weights.values())))
    for r in range(settings.rounds):
        down = global_model_payload(global_w, settings.fleet, r)
        received = received_global_model(down)
        updates, up_bytes = [], 0
        for plan, rng, x, t, z in zip(plans, rngs, flats, targets, logits):
            local = train_round(student, received, x, t, z, plan, rng)
            blob = update_payload(local.delta, update_meta(settings.fleet, plan.device, r, local.num_examples,
                                                           clip=plan.clip, dp_mode=plan.dp_mode))
            up_bytes += len(blob)
            tensors, meta = received_update(blob)
            updates.append(AcceptedUpdate(meta.device, tensors, meta.num_examples))
        global_w = aggregate(global_w, updates, agg, seed=settings.seed * 100_003 + r).weights
        result.record_round(accuracy(global_w), up_bytes, len(down) * len(devices))
        if on_round:
            on_round(r, result.accuracy_per_round[-1])
    if agg.dp_mode is DpMode.CENTRAL:
        result.epsilon = compute_epsilon(agg.noise_multiplier, 1.0, settings.rounds, settings.delta)
    result.wall_seconds = time.monotonic() - started
    return result
