"""The paper's Table 1, in-process: FedAvg, FedCompress, FedKD, DP-FedAvg and DMSKD on one digits split.

Every method federates over the same devices (simulator.artifacts.prepare_cloud's split), counts
bytes from the real serialised payloads (edge.wire), and is evaluated on the same test split.
FedAvg-family methods train the full multi-exit teacher architecture from scratch (fresh init,
same seed) with Keras; FedKD and DMSKD train the LiteRT student with edge.local_training.train_round
from the full-teacher int8 shard (FedKD) or the planned shards (DMSKD).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cloud.accounting import calibrate_discrete_noise_multiplier
from cloud.candidates import shard_id
from cloud.strategy import DpMode, FedAvgConfig
from cloud.student_training import train_in_cloud
from cloud.teacher import TeacherConfig, build_teacher
from edge.plan import TrainingSettings
from edge.seeding import side_stream
from edge.student_runtime import TrainableStudent
from edge.wire import FLOAT32_DELTA, UINT8_AFFINE_DELTA
from simulator.artifacts import CloudArtifacts
from simulator.baselines.distill import DeviceShard, run_distillation, run_student_fedavg
from simulator.baselines.fedavg import run_fedavg
from simulator.baselines.result import MethodResult
from simulator.baselines.settings import BaselineSettings, NoLabelledDevices
from simulator.compare_report import write_report
from simulator.federation import fleet_evaluator
from simulator.in_process import SEQUENTIAL, FanOut


@dataclass(frozen=True)
class CompareSettings:
    """Rounds, privacy target and local training shared by all methods of one comparison."""

    rounds: int = 10
    seed: int = 0
    target_epsilon: float = 8.0
    delta: float = 1e-5
    training: TrainingSettings = TrainingSettings()  # the students' local training (SGD in the LiteRT program)
    teacher_lr: float = 3e-3  # Adam, FedAvg-family local training; otherwise as `training`
    methods: tuple[str, ...] = ()  # keys of compare.METHODS; () = all of them
    insecure_seeded_noise: bool = False  # the DP rows' noise from the seed: reproducible, and predictable
    fan_out: FanOut = field(default=SEQUENTIAL, compare=False, repr=False)  # where the student rows' fits run

    def __post_init__(self) -> None:
        if not self.methods:
            object.__setattr__(self, "methods", tuple(METHODS))
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown methods {unknown} (--methods); choose all, students or from {list(METHODS)}")
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


METHODS = {  # key: the row's name in the table
    "teacher": "Teacher (upper bound)",
    "central": "Student on all data, central (upper bound)",
    "cloud-only": "Cloud-only student",
    "cloud-distilled": "Cloud-distilled student",
    "fedavg": "FedAvg",
    "fedcompress": "FedCompress",
    "dp-fedavg": "DP-FedAvg",
    "fedavg-student": "FedAvg of the student",
    "fedkd": "FedKD (no sharding)",
    "dmskd-no-kd": "DMSKD without KD",
    "dmskd": "DMSKD",
    "dmskd-dp": "DMSKD + central DP",
}
FIXED_METHODS = ("teacher", "central", "cloud-only", "cloud-distilled")  # trained without federation: no rounds
STUDENT_METHODS = tuple(k for k in METHODS if k not in ("fedavg", "fedcompress", "dp-fedavg"))  # fast: LiteRT only


def run_compare(art: CloudArtifacts, settings: CompareSettings, out_dir: Path | None,
                teacher_config: TeacherConfig | None = None, show_progress: bool = True,
                context: dict | None = None) -> list[MethodResult]:
    """Run the chosen methods; write compare.json, .md and .png into out_dir (None: no files); return the rows.

    A supervised row on a fleet without labels is left out and named in the context's "skipped"."""
    s = settings
    teacher_config = teacher_config or art.teacher_config
    z = calibrate_discrete_noise_multiplier(s.target_epsilon, 1.0, s.rounds, s.delta)
    devices, test, holdout = art.split.devices, art.split.test, art.split.device_holdout
    teacher_training = replace(s.training, lr=s.teacher_lr)
    start = art.start_weights or art.student_weights

    def fedavg(method: str, encoding: str, agg: FedAvgConfig):
        cfg = BaselineSettings(s.rounds, teacher_training, agg, encoding, s.delta, s.seed,
                               insecure_seeded_noise=s.insecure_seeded_noise)
        return lambda cb: run_fedavg(method, build_teacher(teacher_config, seed=s.seed), devices, test, cfg, cb,
                                     holdout)

    def distill(method: str, shards: list[DeviceShard], agg: FedAvgConfig, alpha: float | None = None):
        training = s.training if alpha is None else replace(s.training, alpha=alpha)
        cfg = BaselineSettings(s.rounds, training, agg, delta=s.delta, seed=s.seed,
                               insecure_seeded_noise=s.insecure_seeded_noise, fan_out=s.fan_out)
        return lambda cb: run_distillation(method, art.student_program, start, devices, shards, test, cfg,
                                           art.student_flops_per_sample, cb, holdout)

    def student_fedavg(method: str):
        cfg = BaselineSettings(s.rounds, replace(s.training, alpha=1.0), no_dp, delta=s.delta, seed=s.seed,
                               insecure_seeded_noise=s.insecure_seeded_noise, fan_out=s.fan_out)
        return lambda cb: run_student_fedavg(method, art.student_program, start, devices, test, cfg,
                                             art.student_flops_per_sample, cb, holdout)

    def fixed(method: str, weights: dict[str, np.ndarray] | None):
        return lambda cb: cloud_row(method, art, weights)

    clip = s.training.clip
    no_dp, central = FedAvgConfig(DpMode.NONE, clip), FedAvgConfig(DpMode.CENTRAL, clip, z)
    build = {
        "teacher": lambda n: fixed(n, None),
        "central": lambda n: fixed(n, central_student(art, s.training, s.seed)),
        "cloud-only": lambda n: fixed(n, art.cloud_only_weights),
        "cloud-distilled": lambda n: fixed(n, art.cloud_distilled_weights),
        "fedavg": lambda n: fedavg(n, FLOAT32_DELTA, no_dp),
        "fedcompress": lambda n: fedavg(n, UINT8_AFFINE_DELTA, no_dp),
        "dp-fedavg": lambda n: fedavg(n, FLOAT32_DELTA, central),
        "fedavg-student": lambda n: student_fedavg(n),
        "fedkd": lambda n: distill(n, fedkd_shards(art), no_dp),
        "dmskd-no-kd": lambda n: distill(n, dmskd_shards(art), no_dp, alpha=1.0),
        "dmskd": lambda n: distill(n, dmskd_shards(art), no_dp),
        "dmskd-dp": lambda n: distill(n, dmskd_shards(art), central),
    }
    results, skipped = [], []
    for key in (k for k in METHODS if k in s.methods):
        name = METHODS[key]
        try:
            results.append(_with_progress(name, build[key](name), s.rounds,
                                          show_progress and key not in FIXED_METHODS))
        except NoLabelledDevices:
            skipped.append(name)
    if out_dir is not None:
        write_report(out_dir, results, {**(context or {}), **_context(art, s, z, teacher_config),
                                        "skipped (no device labels)": skipped})
    return results


def cloud_row(method: str, art: CloudArtifacts, weights: dict[str, np.ndarray] | None) -> MethodResult:
    """A row trained without federation: the teacher (weights None) or a student flashed from the cloud."""
    if weights is None:
        return MethodResult(method, art.teacher_accuracy, params=art.teacher_params,
                            initial_device_accuracy=art.teacher_device_accuracy, notes="no federation")
    got = fleet_evaluator(art.student_program, art)(weights)
    return MethodResult(method, got["accuracy"], params=int(sum(w.size for w in weights.values())),
                        initial_device_accuracy=got.get("device_accuracy", float("nan")), notes="no federation")


def central_student(art: CloudArtifacts, training: TrainingSettings, seed: int) -> dict[str, np.ndarray]:
    """The student trained centrally on the cloud's and every device's training data with true labels."""
    x = np.concatenate([art.split.cloud.x, *[d.x for d in art.split.devices]])
    y = np.concatenate([art.split.cloud.y, *[d.y for d in art.split.devices]])
    rng = np.random.default_rng(side_stream(seed, "central-student"))
    return train_in_cloud(TrainableStudent.from_bytes(art.student_program), art.student_weights, x, y, None,
                          training, rng)


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
        "device_labels": [d.num_labelled for d in art.split.devices],
        "device_holdout_examples": [len(h) for h in art.split.device_holdout],
        "cloud_proxy_examples": len(art.split.cloud),
        "warm_start": art.start_weights is art.cloud_distilled_weights,
        "device_shifts": [asdict(s) for s in art.split.device_shifts],
        "teacher_device_accuracy": art.teacher_device_accuracy,
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
