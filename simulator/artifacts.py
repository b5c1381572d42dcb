"""The cloud side of a run: data splits, teacher, profiles, plan, exported shards and student."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cloud.candidates import teacher_candidates
from cloud.planner import DeviceProfile, ShardAssignment, plan_shards
from cloud.profiler import PrefixProfile, forward_flops
from cloud.student import build_student, student_weight_names
from cloud.student_training import train_in_cloud
from cloud.teacher import TeacherConfig, build_teacher, exit_accuracies, mean_device_accuracy, train_teacher
from edge.seeding import side_stream
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from export.shards import check_shard
from export.student import export_trainable_student
from export.teacher_dir import TeacherBundle, prefix_model
from export.verify import Agreement
from simulator.config import ExperimentConfig
from simulator.data import Dataset, FederatedSplit, federated_split, load_digits
from simulator.device_shift import augmented, shift_devices
from simulator.loaders import load_dataset, num_classes
from simulator.meter_tasks import load_task


@dataclass
class CloudArtifacts:
    """Everything the aggregator publishes, plus the facts the report needs."""

    split: FederatedSplit
    teacher_params: int
    exit_accuracies: list[float]  # on the test split, shallowest exit first
    profiles: list[PrefixProfile]
    shards: dict[str, bytes]
    shard_checks: dict[str, Agreement]
    assignments: list[ShardAssignment]
    student_program: bytes
    student_weights: dict[str, np.ndarray]
    student_flops_per_sample: int
    prefix_shards: dict[int, bytes] = field(default_factory=dict)  # every prefix's int8 shard, by exit k
    cloud_only_weights: dict[str, np.ndarray] = field(default_factory=dict)  # CE on the proxy split
    cloud_distilled_weights: dict[str, np.ndarray] = field(default_factory=dict)  # KD from the full teacher
    start_weights: dict[str, np.ndarray] = field(default_factory=dict)  # where the federation starts
    teacher_device_accuracy: float = float("nan")  # final exit, mean over the devices' own held-out data
    teacher_config: TeacherConfig = TeacherConfig()  # the teacher's architecture (input shape, classes)

    @property
    def teacher_accuracy(self) -> float:
        """The full teacher's (final exit's) test accuracy."""
        return self.exit_accuracies[-1]


def device_budgets(config: ExperimentConfig, full_flops: int, split: FederatedSplit) -> list[DeviceProfile]:
    """Budgets (FLOPs per local epoch) spanning budget_span of the full teacher, a 10x range by default."""
    lo, hi = config.budget_span
    fractions = np.linspace(lo, hi, config.devices)
    return [DeviceProfile(f"dev{i:03d}", float(f * full_flops * len(d)), len(d))
            for i, (f, d) in enumerate(zip(fractions, split.devices))]


def train_cloud_teacher(config: ExperimentConfig, progress: Callable[[str], None] = lambda msg: None
                        ) -> tuple[FederatedSplit, TeacherBundle, list[float]]:
    """Split the data, train the teacher on the cloud split; held-out = a fifth of the cloud split."""
    data = bundled_data(config.task) if config.data is None else load_dataset(config.data)
    split = federated_split(data, config.devices, config.seed, cloud_fraction=config.cloud_fraction,
                            alpha=config.dirichlet_alpha, min_size=config.min_samples_per_device,
                            labelled_fraction=config.labelled_fraction, sampling=config.device_sampling,
                            samples_per_device=config.samples_per_device)
    if split.sampling is not None:
        progress(split.sampling.describe(config.devices))
    if config.device_shift > 0:
        rng = np.random.default_rng(side_stream(config.seed, "device-shift"))
        devices, holdout, shifts = shift_devices(split.devices, split.device_holdout, config.device_shift,
                                                 num_classes(data), rng, config.shift_parts)
        split = dataclasses.replace(split, devices=devices, device_holdout=holdout, device_shifts=shifts)
    n_val = len(split.cloud) // 5
    train, val = split.cloud.take(np.arange(n_val, len(split.cloud))), split.cloud.take(np.arange(n_val))
    if config.cloud_augment > 0:
        train = augmented(train, config.cloud_augment, config.augment_copies,
                          np.random.default_rng(side_stream(config.seed, "cloud-augment-teacher")))
    progress("training the multi-exit teacher")
    teacher = build_teacher(teacher_config_for(data), seed=config.seed)
    train_teacher(teacher, train.x, train.y, epochs=config.teacher_epochs, seed=config.seed)
    bundle = TeacherBundle(teacher, exit_accuracies(teacher, val.x, val.y), train.x, val.x, val.y)
    return split, bundle, exit_accuracies(teacher, split.test.x, split.test.y)


def prepare_cloud(config: ExperimentConfig, progress=lambda msg: None) -> CloudArtifacts:
    """Train the teacher; export, profile and plan its prefixes (cloud.candidates); check shards; export the student."""
    split, bundle, test_acc = train_cloud_teacher(config, progress)
    progress("exporting int8 shards")
    facts = teacher_candidates(bundle)
    profiles = [f.profile for f in facts]
    budgets = device_budgets(config, profiles[-1].flops, split)
    assignments = plan_shards(budgets, [f.candidate() for f in facts], config.comm_lambda)
    by_id = {f.shard_id: f for f in facts}
    shards = {sid: by_id[sid].model for sid in sorted({a.shard_id for a in assignments})}
    checks = {sid: check_shard(shards[sid], prefix_model(bundle.model, by_id[sid].k), split.test.x, split.test.y)
              for sid in shards}
    progress("exporting the trainable student")
    input_dim = int(np.prod(split.cloud.x.shape[1:]))
    student = build_student(input_dim, config.student_hidden, num_classes(split.cloud), seed=config.seed)
    program = export_trainable_student(student, batch_size=config.training.batch_size)
    weights = {n: w.numpy().astype(np.float32) for n, w in zip(student_weight_names(student), student.weights)}
    prefix_shards = {f.k: f.model for f in facts}
    progress("training the cloud-only and cloud-distilled students on the proxy split")
    runtime = TrainableStudent.from_bytes(program)
    proxy = split.cloud if config.cloud_augment == 0 else augmented(
        split.cloud, config.cloud_augment, config.augment_copies,
        np.random.default_rng(side_stream(config.seed, "cloud-augment-students")))
    full = ShardRunner.from_bytes(prefix_shards[max(prefix_shards)]).logits(proxy.x)
    rng = np.random.default_rng(side_stream(config.seed, "cloud-students"))
    cloud_only = train_in_cloud(runtime, weights, proxy.x, proxy.y, None, config.training, rng)
    distilled = train_in_cloud(runtime, weights, proxy.x, proxy.y, full, config.training, rng)
    return CloudArtifacts(split, bundle.model.count_params(), test_acc, profiles, shards, checks,
                          assignments, program, weights, forward_flops(student), prefix_shards, cloud_only, distilled,
                          distilled if config.warm_start else weights,
                          mean_device_accuracy(bundle.model, [(h.x, h.y) for h in split.device_holdout]),
                          teacher_config_for(split.cloud))


def bundled_data(task: str) -> Dataset:
    """The bundled digits, or one of the smart-meter tasks sktime's wheel ships."""
    return load_digits() if task == "digits" else load_task(task)


def teacher_config_for(data: Dataset) -> TeacherConfig:
    """The default teacher architecture for the shape and classes of `data`."""
    if data.x.ndim != 4:
        raise ValueError(f"data must be (N, H, W, C) images or (N, length, 1, 1) series, got shape {data.x.shape}")
    h, w, c = (int(d) for d in data.x.shape[1:])
    return TeacherConfig(input_shape=(h, w, c), num_classes=num_classes(data))
