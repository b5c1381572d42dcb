"""The student trained in the cloud, without federation: the baselines every federated figure must beat.

`cloud_only`: cross-entropy on the cloud's labelled proxy split (alpha = 1). `cloud_distilled`: the
distillation loss from the full teacher's logits on the same split, the federation's warm start.
Both run the LiteRT student program the devices run, so the weights are interchangeable.
"""

from __future__ import annotations

import numpy as np

from edge.local_training import distillation_targets
from edge.plan import TrainingSettings
from edge.student_runtime import TrainableStudent

CLOUD_EPOCHS = 30


def train_in_cloud(student: TrainableStudent, initial: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   teacher_logits: np.ndarray | None, training: TrainingSettings, rng: np.random.Generator,
                   epochs: int = CLOUD_EPOCHS) -> dict[str, np.ndarray]:
    """Weights after `epochs` of the student's own train step on (x, y); no teacher: plain cross-entropy."""
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    logits = np.zeros((len(x), student.num_classes), np.float32) if teacher_logits is None else teacher_logits
    alpha = 1.0 if teacher_logits is None else training.alpha
    student.set_weights(initial)
    student.fit(flat, distillation_targets(logits, y, student.num_classes), logits, epochs=epochs, rng=rng,
                alpha=alpha, tau=training.tau, lr=training.lr)
    return student.get_weights()
