"""The paper's Table 1, in-process: FedAvg, FedCompress, FedKD, DP-FedAvg and DMSKD on one digits split.

Every method federates over the same devices (simulator.artifacts.prepare_cloud's split), counts
bytes from the real serialised payloads (edge.wire), and is evaluated on the same test split.
FedAvg-family methods train the full multi-exit teacher architecture from scratch (fresh init,
same seed) with Keras; FedKD and DMSKD train the LiteRT student with edge.local_training.train_round
from the full-teacher int8 shard (FedKD) or the planned shards (DMSKD).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from cloud.accounting import calibrate_noise_multiplier
from cloud.candidates import shard_id
from cloud.strategy import DpMode, FedAvgConfig
from cloud.teacher import TeacherConfig, build_teacher
from edge.plan import TrainingSettings
from edge.wire import FLOAT32_DELTA, UINT8_AFFINE_DELTA
from simulator.artifacts import CloudArtifacts
from simulator.baselines.distill import DeviceShard, run_distillation
from simulator.baselines.fedavg import run_fedavg
from simulator.baselines.result import MethodResult
from simulator.baselines.settings import BaselineSettings
from simulator.compare_report import write_report


@dataclass(frozen=True)
class CompareSettings:
    """Rounds, privacy target and local training shared by all methods of one comparison."""

    rounds: int = 10
    seed: int = 0
    target_epsilon: float = 8.0
    delta: float = 1e-5
    training: TrainingSettings = TrainingSettings()  # the students' local training (SGD in the LiteRT program)
    teacher_lr: float = 3e-3  # Adam, FedAvg-family local training; otherwise as `training`
    dmskd_dp_row: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("--rounds must be at least 1")
        if not self.target_epsilon > 0:
            raise ValueError("--target-epsilon must be positive")


def fedkd_shards(art: CloudArtifacts) -> list[DeviceShard]:
    """Every device gets the deepest prefix (the full teacher, exit L) as an int8 shard."""
    if not art.prefix_shards:
        raise ValueError("the cloud artefacts carry no per-prefix shards; build them with prepare_cloud")
    k = max(art.prefix_shards)
    blob = art.prefix_shards[k]
    flops = {p.k: p.flops for p in art.profiles}[k]
    return [DeviceShard(shard_id(k), blob, flops) for _ in art.split.devices]


def dmskd_shards(art: CloudArtifacts) -> list[DeviceShard]:
    """The planned shard of every device (art.assignments, in device order)."""
    flops = {p.k: p.flops for p in art.profiles}
    return [DeviceShard(a.shard_id, art.shards[a.shard_id], flops[a.k]) for a in art.assignments]


def run_compare(art: CloudArtifacts, settings: CompareSettings, out_dir: Path,
                teacher_config: TeacherConfig = TeacherConfig(), show_progress: bool = True,
                context: dict | None = None) -> list[MethodResult]:
    """Run every method, write compare.json, compare.md and compare.png into out_dir, return the rows."""
    s = settings
    z = calibrate_noise_multiplier(s.target_epsilon, 1.0, s.rounds, s.delta)
    devices, test = art.split.devices, art.split.test

    teacher_training = replace(s.training, lr=s.teacher_lr)

    def fedavg(method: str, encoding: str, agg: FedAvgConfig):
        cfg = BaselineSettings(s.rounds, teacher_training, agg, encoding, s.delta, s.seed)
        return lambda cb: run_fedavg(method, build_teacher(teacher_config, seed=s.seed), devices, test, cfg, cb)

    def distill(method: str, shards: list[DeviceShard], agg: FedAvgConfig):
        cfg = BaselineSettings(s.rounds, s.training, agg, delta=s.delta, seed=s.seed)
        return lambda cb: run_distillation(method, art.student_program, art.student_weights, devices, shards, test,
                                           cfg, art.student_flops_per_sample, cb)

    clip = s.training.clip
    no_dp, central = FedAvgConfig(DpMode.NONE, clip), FedAvgConfig(DpMode.CENTRAL, clip, z)
    methods = [
        ("FedAvg", fedavg("FedAvg", FLOAT32_DELTA, no_dp)),
        ("FedCompress", fedavg("FedCompress", UINT8_AFFINE_DELTA, no_dp)),
        ("FedKD", distill("FedKD", fedkd_shards(art), no_dp)),
        ("DP-FedAvg", fedavg("DP-FedAvg", FLOAT32_DELTA, central)),
        ("DMSKD", distill("DMSKD", dmskd_shards(art), no_dp)),
    ]
    if s.dmskd_dp_row:
        methods.append(("DMSKD + central DP", distill("DMSKD + central DP", dmskd_shards(art), central)))
    results = [_with_progress(name, run, s.rounds, show_progress) for name, run in methods]
    write_report(out_dir, results, {**(context or {}), **_context(art, s, z, teacher_config)})
    return results


def _with_progress(name: str, run, rounds: int, show: bool) -> MethodResult:
    with tqdm(total=rounds, desc=f"{name:18s}", unit="round", disable=not show) as bar:
        def on_round(_r: int, acc: float) -> None:
            bar.update(1)
            bar.set_postfix(acc=f"{acc:.3f}")
        return run(on_round)


def _context(art: CloudArtifacts, s: CompareSettings, z: float, teacher_config: TeacherConfig) -> dict:
    """The setup a reader needs next to the table."""
    return {
        "devices": len(art.split.devices),
        "device_examples": [len(d) for d in art.split.devices],
        "test_examples": len(art.split.test),
        "rounds": s.rounds,
        "seed": s.seed,
        "local_epochs": s.training.local_epochs,
        "batch_size": s.training.batch_size,
        "teacher_optimizer": f"Adam(lr={s.teacher_lr}), state reset per device and round",
        "student_optimizer": f"SGD(lr={s.training.lr}) in the LiteRT student program",
        "teacher_blocks": [list(b) for b in teacher_config.blocks],
        "cloud_teacher_accuracy": art.teacher_accuracy,
        "student_params": int(sum(w.size for w in art.student_weights.values())),
        "dmskd_plan": {a.device_id: a.shard_id for a in art.assignments},
        "target_epsilon": s.target_epsilon,
        "delta": s.delta,
        "clip": s.training.clip,
        "noise_multiplier": z,
        "alpha": s.training.alpha,
        "tau": s.training.tau,
    }
