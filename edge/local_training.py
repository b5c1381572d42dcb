"""One device round without I/O: distil from the shard, train the student, clip, noise, encode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.compact_update import encode_compact_update
from edge.noise_source import NoiseSource
from edge.plan import DevicePlan
from edge.privacy import DiscreteGaussianMechanism, clip_update
from edge.stochastic_quantization import BITS_OF, encoding_for_bits
from edge.update_quantization import update_tensors
from edge.wire import UpdateMeta, encode_update, training_digest


class Student(Protocol):
    """What local training needs of a student runtime (edge.student_runtime.TrainableStudent)."""

    batch_size: int

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def fit(self, x: np.ndarray, y_onehot: np.ndarray, teacher_logits: np.ndarray, epochs: int,
            rng: np.random.Generator, alpha: float, tau: float, lr: float) -> list[float]: ...


@dataclass(frozen=True)
class LocalResult:
    """The privatised delta, how many examples it came from, and the per-epoch training loss."""

    delta: dict[str, np.ndarray]
    num_examples: int
    losses: list[float]


UNLABELLED = -1  # a sample whose label the device does not have


def distillation_targets(shard_logits: np.ndarray, labels: np.ndarray | None, num_classes: int) -> np.ndarray:
    """One-hot hard targets: the local label where there is one (not UNLABELLED), else the shard's arg-max."""
    guess = np.argmax(shard_logits, axis=1)
    if labels is None:
        return np.eye(num_classes, dtype=np.float32)[guess]
    labels = np.asarray(labels)
    if labels.shape != guess.shape:
        raise ValueError(f"{len(labels)} labels for {len(guess)} samples; give one label (or -1) per sample")
    if np.any((labels < UNLABELLED) | (labels >= num_classes)):
        raise ValueError(f"labels must be class indices 0..{num_classes - 1}, or -1 for an unlabelled sample")
    return np.eye(num_classes, dtype=np.float32)[np.where(labels == UNLABELLED, guess, labels)]


def labels_in_use(labels: np.ndarray | None, fraction: float) -> np.ndarray | None:
    """The labels a device may train on: the first round(fraction * n) samples' labels, the rest UNLABELLED."""
    if labels is None or fraction >= 1.0:
        return labels
    labels = np.asarray(labels)
    if fraction <= 0.0:
        return None
    keep = int(round(fraction * len(labels)))
    held = np.flatnonzero(labels != UNLABELLED)
    out = np.full_like(labels, UNLABELLED)
    out[held[:keep]] = labels[held[:keep]]
    return out


def train_round(student: Student, global_weights: dict[str, np.ndarray], x_flat: np.ndarray, targets: np.ndarray,
                shard_logits: np.ndarray, plan: DevicePlan, rng: np.random.Generator,
                noise: NoiseSource | None = None) -> LocalResult:
    """Start from the global student, run local epochs of KD, return the clipped (noised) delta.

    rng shuffles the local data; noise draws the `local` DP mode's discrete Gaussian (required there)."""
    t = plan.training
    if student.batch_size != t.batch_size:
        raise ValueError(f"plan for {plan.device} trains with batch_size {t.batch_size} but the student program "
                         f"has a fixed batch of {student.batch_size}; re-export the student or fix the plan")
    student.set_weights(global_weights)
    losses = student.fit(x_flat, targets, shard_logits, epochs=t.local_epochs, rng=rng,
                         alpha=t.alpha, tau=t.tau, lr=t.lr)
    local = student.get_weights()
    delta = {k: (local[k] - global_weights[k]).astype(np.float32) for k in global_weights}
    clipped, _ = clip_update(delta, t.clip)
    if plan.dp_mode == "local":
        if noise is None:
            raise ValueError(f"plan for {plan.device} is in local DP mode and needs a noise source "
                             f"(edge.noise_source.SecureNoise)")
        dimension = int(sum(v.size for v in clipped.values()))
        clipped = DiscreteGaussianMechanism(t.clip, plan.noise_multiplier, dimension).privatise(clipped, noise)
    return LocalResult(clipped, len(x_flat), losses)


def update_payload(result: LocalResult, plan: DevicePlan, round_: int, base_version: int,
                   rounding: np.random.Generator | None = None) -> bytes:
    """The wire blob of a device's update: its delta in the plan's bit width and the metadata the aggregator
    verifies. The delta is quantised last (after clipping and, in `local` mode, the noise): post-processing.
    rounding: the stochastic rounding's Generator (edge.seeding.rounding_generator; OS entropy if None)."""
    examples = min(result.num_examples, plan.max_examples)  # the plan caps what an update may weigh
    encoding = encoding_for_bits(plan.update_bits)
    meta = UpdateMeta(plan.fleet, plan.device, round_, base_version, examples, plan.clip,
                      plan.noise_multiplier if plan.dp_mode == "local" else 0.0, plan.dp_mode,
                      training=training_digest(plan.training.declaration()), encoding=encoding)
    wire = update_tensors(result.delta, encoding, rounding)
    if encoding in BITS_OF:  # quantised: the compact container (protocol 3), a few dozen bytes of framing
        return encode_compact_update(wire, meta)
    return encode_update(wire, meta)
