"""A small trained teacher directory (export/teacher_dir.py layout), made once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_teacher_dir(tmp_path_factory) -> Path:
    """The default multi-exit teacher trained 3 epochs on scikit-learn's digits, saved with export.teacher_dir."""
    from sklearn.datasets import load_digits

    from cloud.teacher import build_teacher, exit_accuracies, train_teacher
    from export.teacher_dir import TeacherBundle, save_teacher_dir

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, hold = order[:1200], order[1200:1500]
    teacher = build_teacher(seed=0)
    train_teacher(teacher, x[train], y[train], epochs=3, seed=0)
    bundle = TeacherBundle(teacher, exit_accuracies(teacher, x[hold], y[hold]), x[train], x[hold], y[hold])
    return save_teacher_dir(tmp_path_factory.mktemp("teacher"), bundle)
