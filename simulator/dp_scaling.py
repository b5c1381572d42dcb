"""Accuracy against fleet size at a fixed epsilon: why client-level DP needs large fleets.

In-process (no broker) so that thousands of devices fit in minutes: a short driver of the round
engine over the in-memory transport, with StudentClients running the device code and the same
LiteRT student program. Virtual devices draw their samples with replacement from the bundled
digits' device pool each round: this isolates how noise shrinks with the number of clients K,
it does not claim more data than digits has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cloud.accounting import calibrate_discrete_noise_multiplier, calibrate_noise_multiplier
from cloud.evaluation import student_evaluator
from cloud.round_engine import EngineConfig, RoundEngine
from cloud.strategy import DpMode, FedAvgConfig
from edge.local_training import distillation_targets
from edge.plan import DevicePlan, TrainingSettings
from edge.seeding import FleetSeeds
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from simulator.artifacts import CloudArtifacts
from simulator.in_process import SEQUENTIAL, FanOut, StudentClient, run_rounds
from simulator.report import NOISE_WORDS


@dataclass(frozen=True)
class ScalingPoint:
    """One (mode, fleet size) run: its noise, epsilon and final accuracy."""

    dp_mode: str
    fleet_size: int
    noise_multiplier: float
    epsilon: float
    accuracy: float


@dataclass(frozen=True)
class DevicePool:
    """The devices' data pooled, with the largest shard's logits and the hard targets, computed once."""

    shard_id: str
    flat: np.ndarray
    logits: np.ndarray
    targets: np.ndarray

    @classmethod
    def from_artifacts(cls, art: CloudArtifacts, num_classes: int) -> DevicePool:
        x = np.concatenate([d.x for d in art.split.devices])
        y = np.concatenate([d.visible_labels() for d in art.split.devices])
        shard_id = max(art.shards, key=lambda s: len(art.shards[s]))
        logits = ShardRunner.from_bytes(art.shards[shard_id]).logits(x)
        return cls(shard_id, x.reshape(len(x), -1), logits, distillation_targets(logits, y, num_classes))


def run_point(art: CloudArtifacts, mode: DpMode, fleet_size: int, rounds: int, target_epsilon: float,
              delta: float, training: TrainingSettings, samples_per_device: int, seed: int,
              student: TrainableStudent | None = None, pool: DevicePool | None = None,
              insecure_seeded_noise: bool = False, sampling_rate: float = 1.0,
              float_noise: bool = False, fan_out: FanOut = SEQUENTIAL) -> ScalingPoint:
    """Federate `rounds` rounds over `fleet_size` virtual devices and evaluate.

    student, pool: the LiteRT student and the pooled data, to share them between points.
    insecure_seeded_noise: DP noise from `seed` (reproducible, and fast for thousands of local-DP devices).
    sampling_rate: each round's cohort is a Poisson sample at this rate (central DP is credited it).
    float_noise: central noise from the float Gaussian, calibrated without the grid (comparisons only).
    fan_out: where the virtual devices' fits run (local: here; simulator.ray_fit.RayFanOut: a Ray cluster)."""
    q = sampling_rate if mode is DpMode.CENTRAL else 1.0
    calibrate = calibrate_noise_multiplier if float_noise else calibrate_discrete_noise_multiplier
    z = 0.0 if mode is DpMode.NONE else calibrate(target_epsilon, q, rounds, delta)
    if student is None:
        student = TrainableStudent.from_bytes(art.student_program)
    if pool is None:
        pool = DevicePool.from_artifacts(art, student.num_classes)
    seeds = FleetSeeds.from_seed(seed, fleet_size)
    clients = {}
    for i, device_seed in enumerate(seeds.devices):
        plan = DevicePlan("scaling", f"v{i:05d}", pool.shard_id, "-", "-", rounds, mode.value, z, training)
        clients[plan.device] = StudentClient(plan, student, pool.flat, pool.targets, pool.logits, device_seed,
                                             samples_per_round=samples_per_device,
                                             insecure_seeded_noise=insecure_seeded_noise)
    aggregation = FedAvgConfig(mode, training.clip, z, float_noise=float_noise)
    config = EngineConfig("scaling", tuple(clients), rounds, aggregation, delta,
                          insecure_seeded_noise=insecure_seeded_noise, sampling_rate=sampling_rate)
    engine = RoundEngine(config)
    run = run_rounds(engine, engine.init(art.start_weights, seeds.server), clients, fan_out=fan_out)
    test = art.split.test
    acc = student_evaluator(student, test.x, test.y)(run.state.weights)["accuracy"]
    eps = run.state.ledger.epsilon if run.state.ledger is not None else 0.0
    return ScalingPoint(mode.value, fleet_size, z, eps, acc)


def run_scaling(art: CloudArtifacts, fleet_sizes: list[int], rounds: int, target_epsilon: float, delta: float,
                training: TrainingSettings, samples_per_device: int, seed: int, out_dir: Path,
                insecure_seeded_noise: bool = False, fan_out: FanOut = SEQUENTIAL) -> list[ScalingPoint]:
    """All modes x fleet sizes; writes dp_scaling.json, dp_scaling.md and dp_scaling.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = [(m, k) for m in (DpMode.NONE, DpMode.CENTRAL, DpMode.LOCAL) for k in fleet_sizes]
    student = TrainableStudent.from_bytes(art.student_program)
    pool = DevicePool.from_artifacts(art, student.num_classes)
    points = [run_point(art, m, k, rounds, target_epsilon, delta, training, samples_per_device, seed, student, pool,
                        insecure_seeded_noise, fan_out=fan_out) for m, k in tqdm(grid, desc="dp scaling", unit="fleet")]
    (out_dir / "dp_scaling.json").write_text(json.dumps([p.__dict__ for p in points], indent=2))
    _plot(points, target_epsilon, out_dir / "dp_scaling.png")
    lines = [f"# Accuracy against fleet size at epsilon = {target_epsilon} (delta = {delta}, {rounds} rounds, "
             f"clip C = {training.clip}, {samples_per_device} samples per device, all devices every round; "
             f"DP noise: {NOISE_WORDS[insecure_seeded_noise]})", "",
             "| DP mode | devices | noise multiplier z | epsilon (RDP) | test accuracy |", "|---|---|---|---|---|"]
    lines += [f"| {p.dp_mode} | {p.fleet_size} | {p.noise_multiplier:.3f} | {p.epsilon:.3f} | {p.accuracy:.4f} |"
              for p in points]
    lines += ["", "![accuracy against fleet size](dp_scaling.png)", ""]
    (out_dir / "dp_scaling.md").write_text("\n".join(lines))
    return points


def _plot(points: list[ScalingPoint], eps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode in ("none", "central", "local"):
        pts = [p for p in points if p.dp_mode == mode]
        label = "no DP" if mode == "none" else f"{mode} DP, epsilon={eps:g}"
        ax.plot([p.fleet_size for p in pts], [p.accuracy for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("devices per round")
    ax.set_ylabel("student test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
