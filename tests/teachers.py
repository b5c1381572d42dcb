"""Teacher directories trained on scikit-learn's digits, for the session fixtures (tests/conftest.py, tests/export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from cloud.teacher import TeacherConfig, build_teacher, exit_accuracies, train_teacher
from export.teacher_dir import TeacherBundle, save_teacher_dir

DEFAULT_TEACHER_EPOCHS = 8


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (N, 8, 8, 1) in [0, 1]: 1,400 training images (calibration), 397 held out."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], d.target[order].astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def make_teacher_dir(directory: Path, config: TeacherConfig, epochs: int, seed: int = 0) -> Path:
    """Train a teacher of `config` on the digits split and save it with export.teacher_dir."""
    x, y, hx, hy = digits_split(seed)
    teacher = build_teacher(config, seed=seed)
    train_teacher(teacher, x, y, epochs=epochs, seed=seed)
    return save_teacher_dir(directory, TeacherBundle(teacher, exit_accuracies(teacher, hx, hy), x, hx, hy))
