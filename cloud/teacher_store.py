"""A trained teacher on disk: the Keras model, its held-out exit accuracies and the data to check exports.

Layout of a teacher directory (written by `python -m simulator teacher --out DIR`):
  teacher.keras     the multi-exit Keras model (outputs: exit logits, shallowest first)
  teacher.json      {"num_exits", "input_shape", "num_classes", "exit_accuracies"}
  calibration.npz   x: representative inputs for post-training quantisation
  holdout.npz       x, y: held-out data for accuracy and agreement checks
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the commands check a directory before paying for TensorFlow
    import tensorflow as tf

TEACHER_FILES = ("teacher.keras", "teacher.json", "calibration.npz", "holdout.npz")


@dataclass
class TeacherBundle:
    """A trained multi-exit teacher and the data that goes with it."""

    model: tf.keras.Model
    exit_accuracies: list[float]
    calibration_x: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray

    @property
    def num_exits(self) -> int:
        return len(self.model.outputs)


def save_teacher_bundle(directory: str | Path, bundle: TeacherBundle) -> Path:
    """Write the bundle's four files into directory (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bundle.model.save(d / "teacher.keras")
    meta = {"num_exits": bundle.num_exits, "input_shape": list(bundle.model.input_shape[1:]),
            "num_classes": int(bundle.model.outputs[0].shape[-1]), "exit_accuracies": bundle.exit_accuracies}
    (d / "teacher.json").write_text(json.dumps(meta, indent=2))
    np.savez_compressed(d / "calibration.npz", x=bundle.calibration_x)
    np.savez_compressed(d / "holdout.npz", x=bundle.holdout_x, y=bundle.holdout_y)
    return d


def check_teacher_dir(directory: str | Path) -> None:
    """FileNotFoundError naming every missing file of TEACHER_FILES and the command that writes them."""
    d = Path(directory)
    missing = [n for n in TEACHER_FILES if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"teacher directory {d} lacks {', '.join(missing)}; create it with "
                                f"`python -m simulator teacher --out {d}`")


def load_teacher_bundle(directory: str | Path) -> TeacherBundle:
    """Read a teacher directory (export.teacher_dir does the loading and checks; this adds teacher.json)."""
    from export.teacher_dir import load_teacher_dir

    d = Path(directory)
    check_teacher_dir(d)
    data = load_teacher_dir(d)
    meta = json.loads((d / "teacher.json").read_text())
    return TeacherBundle(data.model, list(meta["exit_accuracies"]), data.calibration_x, data.holdout_x,
                         data.holdout_y)
