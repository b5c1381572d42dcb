"""One device round without I/O: distil from the shard, train the student, clip and noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.plan import DevicePlan
from edge.privacy import add_gaussian_noise, clip_update


@dataclass(frozen=True)
class LocalResult:
    """The privatised delta, how many examples it came from, and the per-epoch training loss."""

    delta: dict[str, np.ndarray]
    num_examples: int
    losses: list[float]


def distillation_targets(shard_logits: np.ndarray, labels: np.ndarray | None, num_classes: int) -> np.ndarray:
    """One-hot hard targets: the local label where there is one, else the shard's arg-max."""
    hard = np.argmax(shard_logits, axis=1) if labels is None else np.asarray(labels)
    return np.eye(num_classes, dtype=np.float32)[hard]


def train_round(student, global_weights: dict[str, np.ndarray], x_flat: np.ndarray, targets: np.ndarray,
                shard_logits: np.ndarray, plan: DevicePlan, rng: np.random.Generator) -> LocalResult:
    """Start from the global student, run local epochs of KD, return the clipped (noised) delta."""
    student.set_weights(global_weights)
    losses = student.fit(x_flat, targets, shard_logits, epochs=plan.local_epochs, rng=rng,
                         alpha=plan.alpha, tau=plan.tau, lr=plan.lr)
    local = student.get_weights()
    delta = {k: (local[k] - global_weights[k]).astype(np.float32) for k in global_weights}
    clipped, _ = clip_update(delta, plan.clip)
    if plan.dp_mode == "local":
        clipped = add_gaussian_noise(clipped, plan.noise_multiplier * plan.clip, rng)
    return LocalResult(clipped, len(x_flat), losses)
